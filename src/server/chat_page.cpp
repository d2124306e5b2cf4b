// The chat page at GET /: plain HTML and JavaScript, no build step. It keeps
// the conversation in the page and streams each reply from
// /v1/chat/completions (stream: true), reading the server-sent events with
// fetch() and a stream reader.
#include "server/server.h"

namespace kestrel::server {

const char* chat_page_html() {
  return R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kestrel chat</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; display: flex; flex-direction: column; height: 100vh; }
  header { padding: 8px 12px; background: #20303c; color: #fff; display: flex; gap: 12px; align-items: center; }
  header input { width: 14em; }
  #log { flex: 1; overflow-y: auto; padding: 12px; }
  .msg { margin: 6px 0; padding: 8px 10px; border-radius: 6px; white-space: pre-wrap; max-width: 80ch; }
  .user { background: #dbeafe; margin-left: auto; }
  .assistant { background: #f1f5f9; }
  .error { background: #fee2e2; }
  form { display: flex; gap: 8px; padding: 8px 12px; border-top: 1px solid #ccc; }
  #input { flex: 1; font-size: 1em; padding: 6px; }
</style>
</head>
<body>
<header>
  <strong>kestrel</strong>
  <label>temperature <input id="temp" type="number" step="0.1" min="0" max="2" value="0.7" style="width:4em"></label>
  <label>max tokens <input id="maxtok" type="number" min="1" value="256" style="width:5em"></label>
  <label>API key <input id="key" type="password" placeholder="(none)"></label>
  <button id="clear" type="button">clear</button>
</header>
<div id="log"></div>
<form id="form">
  <input id="input" autocomplete="off" placeholder="Type a message and press Enter">
  <button id="send" type="submit">Send</button>
  <button id="stop" type="button" disabled>Stop</button>
</form>
<script>
const log = document.getElementById('log');
const input = document.getElementById('input');
const sendBtn = document.getElementById('send');
const stopBtn = document.getElementById('stop');
let messages = [];
let controller = null;

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  div.textContent = text;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

document.getElementById('clear').onclick = () => { messages = []; log.innerHTML = ''; };
stopBtn.onclick = () => { if (controller) controller.abort(); };

document.getElementById('form').onsubmit = async (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = '';
  messages.push({role: 'user', content: text});
  bubble('user', text);
  const out = bubble('assistant', '');
  out.id = 'reply-' + messages.length;
  controller = new AbortController();
  sendBtn.disabled = true; stopBtn.disabled = false;
  const headers = {'Content-Type': 'application/json'};
  const key = document.getElementById('key').value;
  if (key) headers['Authorization'] = 'Bearer ' + key;
  let reply = '';
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST', headers, signal: controller.signal,
      body: JSON.stringify({
        messages, stream: true,
        temperature: parseFloat(document.getElementById('temp').value),
        max_tokens: parseInt(document.getElementById('maxtok').value, 10),
      }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || ('HTTP ' + res.status));
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (!event.startsWith('data: ')) continue;
        const data = event.slice(6);
        if (data === '[DONE]') continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          reply += delta.content;
          out.textContent = reply;
          log.scrollTop = log.scrollHeight;
        }
      }
    }
    messages.push({role: 'assistant', content: reply});
    out.dataset.done = '1';
  } catch (err) {
    if (err.name === 'AbortError') {
      messages.push({role: 'assistant', content: reply});
      out.dataset.done = '1';
    } else {
      out.className = 'msg error';
      out.textContent = 'error: ' + err.message;
      messages.pop();
    }
  } finally {
    controller = null;
    sendBtn.disabled = false; stopBtn.disabled = true;
    input.focus();
  }
};
input.focus();
</script>
</body>
</html>
)HTML";
}

}  // namespace kestrel::server
