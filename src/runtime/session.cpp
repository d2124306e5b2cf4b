#include "runtime/session.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/stop_matcher.h"

namespace kestrel {
namespace {

int64_t resolve_ctx(const Model& m, int64_t want) {
  const int64_t train = m.config().n_ctx_train > 0 ? m.config().n_ctx_train : 4096;
  if (want <= 0) return train;
  return want;
}

int checked_batch(int n_batch) {
  if (n_batch <= 0) fail("session: batch size must be positive, got ", n_batch);
  return n_batch;
}

}  // namespace

Session::Session(const Model& model, const SessionOptions& options)
    : n_batch_(checked_batch(options.n_batch)),
      core_(model, options.engine, model.kv_shape(resolve_ctx(model, options.n_ctx), 1)),
      compressor_(kv_compress_spec(options.engine.kv_compress), model.config().n_layer, model.config().n_kv_head) {}

void Session::clear() {
  history_.clear();
  core_.cache().clear();
  compressor_.reset();
  evicted_blocks_ = 0;
}

void Session::eval(std::span<const int32_t> tokens, bool all_logits) {
  const int64_t n_vocab = model().config().n_vocab;
  if (n_past() + static_cast<int64_t>(tokens.size()) > n_ctx())
    fail("context overflow: ", n_past() + static_cast<int64_t>(tokens.size()), " tokens requested, the context holds ",
         n_ctx());
  if (tokens.empty()) return;
  // A prompt (not a decode step) is compressed once it is in the cache; its
  // last queries' attention is the metric. A decode step is, under a budget.
  const bool prompt = compressor_.on() && tokens.size() > 1;
  if (prompt) core_.set_observer(compressor_.start_prompt(0, n_past() + static_cast<int64_t>(tokens.size())));
  logits_.resize(static_cast<size_t>(all_logits ? tokens.size() : 1) * n_vocab);
  size_t done = 0;
  while (done < tokens.size()) {
    const size_t n = std::min<size_t>(n_batch_, tokens.size() - done);
    batch_.clear();
    for (size_t i = 0; i < n; ++i) {
      const bool last = done + i + 1 == tokens.size();
      batch_.add(tokens[done + i], static_cast<int32_t>(n_past()) + static_cast<int32_t>(i), 0, all_logits || last);
    }
    float* out = all_logits ? logits_.data() + done * n_vocab : logits_.data();
    core_.forward(batch_, out);
    history_.insert(history_.end(), tokens.begin() + done, tokens.begin() + done + n);
    done += n;
  }
  if (prompt) {
    core_.set_observer(nullptr);
    evicted_blocks_ += compressor_.after_prompt(core_.cache(), 0).evicted;
  } else {
    evicted_blocks_ += compressor_.after_decode(core_.cache(), 0).evicted;
  }
}

std::span<const float> Session::append(std::span<const int32_t> tokens) {
  if (tokens.empty()) fail("session: nothing to evaluate");
  eval(tokens, false);
  return {logits_.data(), static_cast<size_t>(model().config().n_vocab)};
}

const std::vector<float>& Session::append_all_logits(std::span<const int32_t> tokens) {
  eval(tokens, true);
  return logits_;
}

std::span<const float> Session::set_history(std::span<const int32_t> tokens) {
  if (tokens.empty()) fail("session: empty prompt");
  size_t common = 0;
  while (common < history_.size() && common < tokens.size() && history_[common] == tokens[common]) ++common;
  // Re-evaluate at least the last token, so that its logits are fresh.
  if (common == tokens.size()) --common;
  // A compressed history cannot be cut inside its evicted part: start over.
  if (static_cast<int64_t>(common) < core_.cache().min_len(0)) {
    clear();
    common = 0;
  }
  history_.resize(common);
  core_.cache().set_seq_len(0, static_cast<int64_t>(common));
  return append(tokens.subspan(common));
}

GenerateResult generate(Session& session, std::span<const int32_t> prompt, const GenerateOptions& opt,
                        const TextCallback& on_text) {
  using Clock = std::chrono::steady_clock;
  const Model& model = session.model();
  const Tokenizer& tok = model.tokenizer();
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());

  SamplingParams sampling = opt.sampling;
  sampling.kind = session.config().sampler;
  Sampler sampler(sampling, model.config().n_vocab);
  for (int32_t t : prompt) sampler.accept(t);

  auto t0 = Clock::now();
  std::span<const float> logits = session.set_history(prompt);
  auto t1 = Clock::now();
  r.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();

  StreamDecoder decoder(tok);
  StopMatcher stops(opt.stop);
  r.finish_reason = "length";
  for (int i = 0; opt.max_tokens < 0 || i < opt.max_tokens; ++i) {
    const int32_t next = sampler.sample(logits);
    sampler.accept(next);
    if (opt.stop_at_eog && tok.is_eog(next)) {
      // Text held back as a possible stop-string start is real output.
      const std::string tail = stops.flush(decoder.flush());
      r.text += tail;
      if (!tail.empty() && on_text) on_text(tail);
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(next);
    const std::string emitted = stops.push(decoder.push(next));
    r.text += emitted;
    if (!emitted.empty() && on_text && !on_text(emitted)) {
      r.finish_reason = "cancelled";
      break;
    }
    if (stops.matched()) {
      r.finish_reason = "stop";
      break;
    }
    if (session.n_past() >= session.n_ctx()) break;
    logits = session.append(std::span<const int32_t>(&next, 1));
  }
  if (r.finish_reason != "stop" && r.finish_reason != "cancelled") {
    const std::string tail = stops.flush(decoder.flush());
    r.text += tail;
    if (!tail.empty() && on_text) on_text(tail);
  }
  r.generate_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace kestrel
