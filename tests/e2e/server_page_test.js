// Runs the chat page's own script (served at GET /) in node against the live
// server, with a minimal stand-in for the DOM: types a message, submits the
// form, and checks that the streamed reply shows up and completes. Not a
// browser test (no layout, no real DOM), but it exercises the page's fetch()
// + stream reader + server-sent-event parsing end to end.
// Usage: node server_page_test.js PORT [API_KEY]
const port = process.argv[2];
const apiKey = process.argv[3] || '';
const base = `http://127.0.0.1:${port}`;

function element(id) {
  return {
    id, value: '', textContent: '', className: '', disabled: false, dataset: {}, children: [],
    scrollTop: 0, scrollHeight: 0, onclick: null, onsubmit: null,
    appendChild(c) { this.children.push(c); },
    focus() {},
    set innerHTML(v) { this.children = []; },
  };
}

async function main() {
  const html = await (await fetch(base + '/')).text();
  const script = html.slice(html.indexOf('<script>') + 8, html.indexOf('</script>'));
  const els = {};
  for (const id of ['log', 'input', 'send', 'stop', 'form', 'temp', 'maxtok', 'key', 'clear']) els[id] = element(id);
  els.temp.value = '0';
  els.maxtok.value = '12';
  els.key.value = apiKey;
  const document = {
    getElementById: (id) => els[id],
    createElement: () => element('div'),
  };
  const pageFetch = (url, opts) => fetch(base + url, opts);
  new Function('document', 'fetch', script)(document, pageFetch);

  els.input.value = 'What is the capital of France?';
  const submitted = els.form.onsubmit({ preventDefault() {} });
  await submitted;
  const bubbles = els.log.children;
  const reply = bubbles[bubbles.length - 1];
  const ok = bubbles.length === 2 && bubbles[0].className === 'msg user' && reply.className === 'msg assistant' &&
             reply.dataset.done === '1' && reply.textContent.length > 0;
  console.log(JSON.stringify({ bubbles: bubbles.length, cls: reply.className, reply: reply.textContent }));
  // A second turn re-sends the conversation (user, assistant, user).
  els.input.value = 'And of Italy?';
  await els.form.onsubmit({ preventDefault() {} });
  const second = els.log.children[els.log.children.length - 1];
  const ok2 = els.log.children.length === 4 && second.dataset.done === '1' && second.textContent.length > 0;
  console.log(JSON.stringify({ second: second.textContent }));
  process.exit(ok && ok2 ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(1); });
