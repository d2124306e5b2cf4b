#include "runtime/longeval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/printf.h"
#include "kv/kv_cache.h"
#include "runtime/session.h"
#include "switches/registry.h"

namespace kestrel {
namespace {

using Clock = std::chrono::steady_clock;

std::string with_key(std::string_view sentence, std::string_view key) {
  std::string out;
  const std::string_view mark = "{KEY}";
  size_t at = 0;
  while (true) {
    const size_t hit = sentence.find(mark, at);
    if (hit == std::string_view::npos) break;
    out.append(sentence.substr(at, hit - at));
    out.append(key);
    at = hit + mark.size();
  }
  out.append(sentence.substr(at));
  return out;
}

void append(std::vector<int32_t>& to, const std::vector<int32_t>& what) {
  to.insert(to.end(), what.begin(), what.end());
}

int greedy_token(std::span<const float> v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Where the first run of exactly five digits at or after `from` starts (a
// longer or shorter run of digits is skipped); npos when there is none.
size_t five_digit_run(std::string_view text, size_t from) {
  size_t i = from;
  while (i < text.size()) {
    if (text[i] < '0' || text[i] > '9') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    if (j - i == 5) return i;
    i = j;
  }
  return std::string_view::npos;
}

// True once `text` holds a whole 5-digit run (followed by something else).
bool answer_complete(std::string_view text) {
  for (size_t i = five_digit_run(text, 0); i != std::string_view::npos; i = five_digit_run(text, i + 5))
    if (i + 5 < text.size()) return true;
  return false;
}

}  // namespace

// ---- prompt ----

PasskeyPromptBuilder::PasskeyPromptBuilder(const Tokenizer& tok, bool chat, std::string_view chat_template,
                                           PasskeyTexts texts)
    : tok_(tok), texts_(std::move(texts)) {
  if (texts_.filler.empty()) fail("longeval: no filler sentences");
  std::string pre, post;
  if (chat) {
    const std::string tmpl = !chat_template.empty() ? std::string(chat_template) : tok.spec().chat_template;
    const std::string marker = "\x01KESTREL_PASSKEY\x01";
    const std::string rendered = apply_chat_template(tmpl, {{"user", marker}}, true);
    const size_t at = rendered.find(marker);
    if (at == std::string::npos) fail("longeval: the chat template does not show the user's message");
    pre = rendered.substr(0, at);
    post = rendered.substr(at + marker.size());
    chat_ = tmpl.empty() ? "chatml" : detect_chat_template(tmpl);
    head_ = tok.encode(pre, true, true);
    append(head_, tok.encode(texts_.instruction, false, false));
  } else {
    head_ = tok.encode(texts_.instruction, true, false);
  }
  for (const auto& s : texts_.filler) filler_.push_back(tok.encode(s, false, false));
  tail_ = tok.encode(texts_.question, false, false);
  if (chat) {
    std::string start = texts_.answer_start;
    if (!start.empty() && start.front() == ' ') start.erase(0, 1);
    append(tail_, tok.encode(post + start, false, true));
  } else {
    append(tail_, tok.encode(texts_.answer_start, false, false));
  }
}

int64_t PasskeyPromptBuilder::fixed_tokens(std::string_view key) const {
  return static_cast<int64_t>(head_.size() + tail_.size() +
                              tok_.encode(with_key(texts_.key_sentence, key), false, false).size());
}

int64_t PasskeyPromptBuilder::filler_tokens(int n) const {
  const int64_t m = static_cast<int64_t>(filler_.size());
  int64_t cycle = 0;
  for (const auto& s : filler_) cycle += static_cast<int64_t>(s.size());
  int64_t total = (n / m) * cycle;
  for (int64_t i = 0; i < n % m; ++i) total += static_cast<int64_t>(filler_[i].size());
  return total;
}

int64_t PasskeyPromptBuilder::max_sentence_tokens() const {
  int64_t mx = 0;
  for (const auto& s : filler_) mx = std::max<int64_t>(mx, static_cast<int64_t>(s.size()));
  return mx;
}

int PasskeyPromptBuilder::max_filler(int64_t n_ctx, int n_answer, std::span<const std::string> keys) const {
  int64_t fixed = 0;
  for (const auto& k : keys) fixed = std::max(fixed, fixed_tokens(k));
  const int64_t room = n_ctx - n_answer - fixed;
  if (room < filler_tokens(1)) return -1;
  // filler_tokens is increasing in n: the largest n with filler_tokens(n) <= room.
  int64_t cycle = filler_tokens(static_cast<int>(filler_.size()));
  int n = static_cast<int>((room / cycle) * static_cast<int64_t>(filler_.size()));
  while (filler_tokens(n + 1) <= room) ++n;
  return n;
}

PasskeyPrompt PasskeyPromptBuilder::build(int n_filler, double depth, std::string_view key) const {
  if (n_filler < 0) fail("longeval: negative filler count ", n_filler);
  if (!(depth >= 0.0 && depth <= 1.0)) fail("longeval: depth ", depth, " outside [0, 1]");
  PasskeyPrompt p;
  const int before = static_cast<int>(std::lround(depth * n_filler));
  p.tokens = head_;
  p.filler_begin = static_cast<int64_t>(p.tokens.size());
  const size_t m = filler_.size();
  for (int i = 0; i < before; ++i) append(p.tokens, filler_[i % m]);
  p.key_begin = static_cast<int64_t>(p.tokens.size());
  append(p.tokens, tok_.encode(with_key(texts_.key_sentence, key), false, false));
  p.key_end = static_cast<int64_t>(p.tokens.size());
  for (int i = before; i < n_filler; ++i) append(p.tokens, filler_[i % m]);
  p.filler_tokens = filler_tokens(n_filler);
  p.n_filler_before = before;
  append(p.tokens, tail_);
  return p;
}

// ---- answer, schedule, bytes ----

std::string first_five_digit_number(std::string_view text) {
  const size_t i = five_digit_run(text, 0);
  return i == std::string_view::npos ? std::string() : std::string(text.substr(i, 5));
}

std::vector<PasskeyTrial> passkey_schedule(int n_trials, int n_depths, uint64_t seed) {
  if (n_trials < 1) fail("longeval: --trials must be at least 1, got ", n_trials);
  if (n_depths < 1) fail("longeval: --depths must be at least 1, got ", n_depths);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> digits(10000, 99999);
  std::vector<PasskeyTrial> out(static_cast<size_t>(n_trials));
  for (int i = 0; i < n_trials; ++i) {
    PasskeyTrial& t = out[static_cast<size_t>(i)];
    t.index = i;
    t.depth_index = i % n_depths;
    t.depth = n_depths == 1 ? 0.0 : static_cast<double>(t.depth_index) / (n_depths - 1);
    t.key = std::to_string(digits(rng));
  }
  return out;
}

KvBytes measure_kv_bytes(const KvCache& cache, int seq) {
  KvBytes b;
  const int seqs[] = {seq};
  b.held = cache.bytes_held(seqs);
  b.tokens = cache.seq_len(seq);
  b.reserved = static_cast<int64_t>(cache.bytes());
  b.resident = static_cast<int64_t>(cache.resident_bytes());
  return b;
}

// ---- the run ----

namespace {

void check_context(const Model& model, const PasskeyPromptBuilder& builder, int64_t n_ctx, int n_answer,
                   std::span<const std::string> keys) {
  const int64_t train = model.config().n_ctx_train;
  if (n_ctx <= 0) fail("longeval: context size must be positive, got ", n_ctx);
  if (train > 0 && n_ctx > train)
    fail("longeval: context ", n_ctx, " is larger than the model's trained context of ", train,
         " tokens; the test measures retrieval within it (use -c ", train, " or less)");
  if (builder.max_filler(n_ctx, n_answer, keys) < 1) {
    int64_t fixed = 0;
    for (const auto& k : keys) fixed = std::max(fixed, builder.fixed_tokens(k));
    fail("longeval: context ", n_ctx, " cannot hold the instruction, the key, the question, one filler sentence and ",
         n_answer, " answer tokens: it needs at least ", fixed + builder.filler_tokens(1) + n_answer, " tokens");
  }
}

// What Session::set_history evaluates to go from `cached` to `prompt`: the
// tokens after the common prefix, and at least the last one.
int64_t tokens_to_evaluate(const std::vector<int32_t>& cached, const std::vector<int32_t>& prompt) {
  size_t common = 0;
  while (common < cached.size() && common < prompt.size() && cached[common] == prompt[common]) ++common;
  if (common == prompt.size() && common > 0) --common;
  return static_cast<int64_t>(prompt.size() - common);
}

std::vector<std::string> keys_of(const std::vector<PasskeyTrial>& s) {
  std::vector<std::string> k;
  for (const auto& t : s) k.push_back(t.key);
  return k;
}

}  // namespace

void check_longeval_options(const Model& model, const LongevalOptions& o) {
  if (o.n_ctx.empty()) fail("longeval: no context size given");
  if (o.n_answer < 6) fail("longeval: the answer needs at least 6 tokens, got ", o.n_answer);
  if (o.n_batch <= 0) fail("longeval: batch size must be positive, got ", o.n_batch);
  const auto schedule = passkey_schedule(o.n_trials, o.n_depths, o.seed);
  const auto keys = keys_of(schedule);
  PasskeyPromptBuilder builder(model.tokenizer(), o.chat, o.chat_template);
  for (int64_t c : o.n_ctx) check_context(model, builder, c, o.n_answer, keys);
}

LongevalResult run_longeval(const Model& model, const LongevalOptions& o, const LongevalProgressFn& progress) {
  check_longeval_options(model, o);
  const auto t_run = Clock::now();
  const Tokenizer& tok = model.tokenizer();
  const auto schedule = passkey_schedule(o.n_trials, o.n_depths, o.seed);
  const auto keys = keys_of(schedule);
  PasskeyPromptBuilder builder(tok, o.chat, o.chat_template);

  LongevalResult r;
  r.model = !model.config().name.empty() ? model.config().name : model.config().arch;
  r.options = o;

  // Run order: decreasing depth (stable), see the header comment.
  std::vector<int> order(schedule.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  if (o.reuse_prefix)
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return schedule[a].depth_index > schedule[b].depth_index; });

  for (int64_t n_ctx : o.n_ctx) {
    const auto t_ctx = Clock::now();
    LongevalContextResult cr;
    cr.n_ctx = n_ctx;
    cr.n_filler = builder.max_filler(n_ctx, o.n_answer, keys);
    cr.trials.resize(schedule.size());

    SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_batch = o.n_batch;
    so.engine = o.engine;
    Session session(model, so);
    r.engine = session.config();

    // The prompts, and what each evaluates given the one before it (for the ETA).
    std::vector<PasskeyPrompt> prompts(schedule.size());
    std::vector<int64_t> to_eval(schedule.size());
    int64_t eval_total = 0;
    const std::vector<int32_t>* prev = nullptr;
    for (int i : order) {
      prompts[i] = builder.build(cr.n_filler, schedule[i].depth, schedule[i].key);
      const auto& p = prompts[i].tokens;
      to_eval[i] = tokens_to_evaluate(prev != nullptr ? *prev : std::vector<int32_t>{}, p);
      eval_total += to_eval[i];
      if (o.reuse_prefix) prev = &p;
      cr.prompt_tokens = std::max<int64_t>(cr.prompt_tokens, static_cast<int64_t>(p.size()));
    }

    int64_t evaluated = 0;
    for (size_t n = 0; n < order.size(); ++n) {
      const int i = order[n];
      const PasskeyPrompt& prompt = prompts[i];
      PasskeyTrialResult& tr = cr.trials[i];
      tr.trial = schedule[i];
      tr.key_pos = prompt.key_begin;
      tr.prompt_tokens = static_cast<int64_t>(prompt.tokens.size());
      if (!o.reuse_prefix) session.clear();

      const auto t0 = Clock::now();
      // set_history rolls the cache back to the common prefix and evaluates the rest.
      tr.evaluated_tokens = tokens_to_evaluate(session.history(), prompt.tokens);
      // A compressed cache cannot be cut inside its evicted part (Session::set_history starts over).
      if (tr.prompt_tokens - tr.evaluated_tokens < session.cache().min_len(0)) tr.evaluated_tokens = tr.prompt_tokens;
      std::span<const float> logits = session.set_history(prompt.tokens);
      const auto t1 = Clock::now();

      StreamDecoder decoder(tok);
      for (int g = 0; g < o.n_answer; ++g) {
        const int32_t next = greedy_token(logits);
        if (tok.is_eog(next)) break;
        tr.generated.push_back(next);
        tr.output += decoder.push(next);
        if (answer_complete(tr.output) || g + 1 == o.n_answer) break;
        logits = session.decode(next);
      }
      tr.output += decoder.flush();
      const auto t2 = Clock::now();
      tr.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
      tr.generate_seconds = std::chrono::duration<double>(t2 - t1).count();
      tr.answer = first_five_digit_number(tr.output);
      tr.pass = tr.answer == tr.trial.key;
      tr.kv = measure_kv_bytes(session.cache());

      cr.passed += tr.pass ? 1 : 0;
      cr.prompt_tokens_total += tr.prompt_tokens;
      cr.evaluated_tokens_total += tr.evaluated_tokens;
      cr.prompt_seconds += tr.prompt_seconds;
      cr.generate_seconds += tr.generate_seconds;
      cr.kv_max.held = std::max(cr.kv_max.held, tr.kv.held);
      cr.kv_max.resident = std::max(cr.kv_max.resident, tr.kv.resident);
      cr.kv_max.reserved = std::max(cr.kv_max.reserved, tr.kv.reserved);
      cr.kv_max.tokens = std::max(cr.kv_max.tokens, tr.kv.tokens);
      evaluated += to_eval[i];

      if (progress) {
        LongevalProgress p;
        p.n_ctx = n_ctx;
        p.trial = static_cast<int>(n + 1);
        p.n_trials = static_cast<int>(order.size());
        p.passed = cr.passed;
        p.last = &tr;
        p.seconds = std::chrono::duration<double>(Clock::now() - t_ctx).count();
        const int64_t left = eval_total - evaluated;
        p.eta_seconds = evaluated > 0 ? p.seconds / static_cast<double>(evaluated) * static_cast<double>(left) : 0.0;
        p.engine = &r.engine;
        progress(p);
      }
    }

    cr.depths.resize(static_cast<size_t>(o.n_depths));
    for (int d = 0; d < o.n_depths; ++d)
      cr.depths[d].depth = o.n_depths == 1 ? 0.0 : static_cast<double>(d) / (o.n_depths - 1);
    for (const auto& tr : cr.trials) {
      DepthResult& d = cr.depths[static_cast<size_t>(tr.trial.depth_index)];
      ++d.trials;
      d.passed += tr.pass ? 1 : 0;
    }
    cr.seconds = std::chrono::duration<double>(Clock::now() - t_ctx).count();
    r.contexts.push_back(std::move(cr));
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - t_run).count();
  return r;
}

// ---- reports ----

namespace {

const auto fmt = printf_string;

std::string mib(int64_t bytes) { return fmt("%.2f", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

}  // namespace

std::string format_longeval_markdown(const LongevalResult& r) {
  std::ostringstream os;
  os << "model: " << r.model << ", engine: " << engine_settings_text(r.engine) << ", trials " << r.options.n_trials
     << " per context over " << r.options.n_depths << " depths, seed " << r.options.seed
     << (r.options.chat ? ", chat template" : ", raw text") << "\n\n";
  os << "pass rate by depth of the key (passed/trials)\n\n| depth |";
  for (const auto& c : r.contexts) os << " c=" << c.n_ctx << " |";
  os << "\n|------:|";
  for (size_t i = 0; i < r.contexts.size(); ++i) os << "------:|";
  os << "\n";
  for (int d = 0; d < r.options.n_depths; ++d) {
    const double depth = r.contexts.empty() ? 0.0 : r.contexts[0].depths[d].depth;
    os << "| " << fmt("%3.0f %%", depth * 100.0) << " |";
    for (const auto& c : r.contexts) {
      const DepthResult& x = c.depths[static_cast<size_t>(d)];
      os << " " << (x.trials ? fmt("%.2f", static_cast<double>(x.passed) / x.trials) : std::string("-")) << " ("
         << x.passed << "/" << x.trials << ") |";
    }
    os << "\n";
  }
  os << "\n| n_ctx | prompt tokens | pass rate | passed | evaluated / prompt tokens | prompt t/s | gen t/s | KV held "
        "MiB | KV resident MiB | KV reserved MiB | wall s |\n";
  os << "|------:|------:|------:|------:|------:|------:|------:|------:|------:|------:|------:|\n";
  for (const auto& c : r.contexts) {
    int64_t gen_tokens = 0;
    for (const auto& t : c.trials) gen_tokens += static_cast<int64_t>(t.generated.size());
    os << "| " << c.n_ctx << " | " << c.prompt_tokens << " | " << fmt("%.3f", c.pass_rate()) << " | " << c.passed << "/"
       << c.trials.size() << " | " << c.evaluated_tokens_total << " / " << c.prompt_tokens_total << " | "
       << fmt("%.1f", c.prompt_seconds > 0 ? c.evaluated_tokens_total / c.prompt_seconds : 0.0) << " | "
       << fmt("%.1f", c.generate_seconds > 0 ? gen_tokens / c.generate_seconds : 0.0) << " | " << mib(c.kv_max.held)
       << " | " << mib(c.kv_max.resident) << " | " << mib(c.kv_max.reserved) << " | " << fmt("%.1f", c.seconds)
       << " |\n";
  }
  os << "\nprompt t/s: prompt tokens evaluated per second (trials reuse the cached prefix up to their key); "
        "KV held: cache blocks in use at the end of a trial x bytes per block, plus a CQ cache's F16 copies "
        "and codebooks (largest over the trials); "
        "KV resident: pages of the cache's pools in RAM (mincore, high-water); reserved: address space.\n";
  return os.str();
}

std::string format_longeval_json(const LongevalResult& r) {
  using Json = nlohmann::ordered_json;
  Json j;
  j["model"] = r.model;
  Json sw = Json::object();
  for (const auto& s : engine_settings(r.engine)) sw[s.name] = s.value;
  j["switches"] = sw;
  j["trials"] = r.options.n_trials;
  j["depths"] = r.options.n_depths;
  j["seed"] = r.options.seed;
  j["chat"] = r.options.chat;
  j["answer_tokens"] = r.options.n_answer;
  j["reuse_prefix"] = r.options.reuse_prefix;
  j["kvcompress"] = find_switch("kvcompress").current(r.engine);
  j["kv_budget"] = r.engine.kv_compress.budget;
  j["seconds"] = r.seconds;
  Json ctxs = Json::array();
  for (const auto& c : r.contexts) {
    Json jc;
    jc["n_ctx"] = c.n_ctx;
    jc["prompt_tokens"] = c.prompt_tokens;
    jc["filler_sentences"] = c.n_filler;
    jc["pass_rate"] = c.pass_rate();
    jc["passed"] = c.passed;
    jc["trials"] = c.trials.size();
    jc["prompt_tokens_total"] = c.prompt_tokens_total;
    jc["evaluated_tokens_total"] = c.evaluated_tokens_total;
    jc["prompt_seconds"] = c.prompt_seconds;
    jc["generate_seconds"] = c.generate_seconds;
    jc["prompt_tokens_per_second"] = c.prompt_seconds > 0 ? c.evaluated_tokens_total / c.prompt_seconds : 0.0;
    jc["seconds"] = c.seconds;
    jc["kv_bytes_held_max"] = c.kv_max.held;
    jc["kv_bytes_resident_max"] = c.kv_max.resident;
    jc["kv_bytes_reserved"] = c.kv_max.reserved;
    Json ds = Json::array();
    for (const auto& d : c.depths)
      ds.push_back({{"depth", d.depth},
                    {"trials", d.trials},
                    {"passed", d.passed},
                    {"pass_rate", d.trials ? static_cast<double>(d.passed) / d.trials : 0.0}});
    jc["by_depth"] = ds;
    Json ts = Json::array();
    for (const auto& t : c.trials)
      ts.push_back({{"index", t.trial.index},
                    {"depth", t.trial.depth},
                    {"key", t.trial.key},
                    {"answer", t.answer},
                    {"pass", t.pass},
                    {"output", t.output},
                    {"key_pos", t.key_pos},
                    {"prompt_tokens", t.prompt_tokens},
                    {"evaluated_tokens", t.evaluated_tokens},
                    {"prompt_seconds", t.prompt_seconds},
                    {"generate_seconds", t.generate_seconds},
                    {"kv_bytes_held", t.kv.held},
                    {"kv_bytes_resident", t.kv.resident},
                    {"kv_tokens", t.kv.tokens}});
    jc["trials_detail"] = ts;
    ctxs.push_back(jc);
  }
  j["contexts"] = ctxs;
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace kestrel
