#include "runtime/accuracy_probe.h"

#include <cmath>

#include "core/error.h"
#include "runtime/perplexity_math.h"
#include "runtime/session.h"

namespace kestrel {

std::vector<int32_t> probe_tokens(const Model& model, std::string_view text, const ProbeOptions& o) {
  if (o.n_prompt < 1 || o.n_positions < 1)
    fail("accuracy probe: needs a prompt and at least one decode step (got ", o.n_prompt, " and ", o.n_positions, ")");
  std::vector<int32_t> t = model.tokenizer().encode(text, true, false);
  const size_t need = static_cast<size_t>(o.n_prompt) + static_cast<size_t>(o.n_positions) + 1;
  if (t.size() < need)
    fail("accuracy probe: the calibration text is ", t.size(), " tokens for this model; ", need,
         " are needed (a prompt of ", o.n_prompt, " and ", o.n_positions, " decode steps)");
  t.resize(need);
  return t;
}

void run_probe(const Model& model, std::span<const int32_t> tokens, EngineConfig config, const ProbeOptions& o,
               const std::function<void(int, std::span<const float>)>& on_step) {
  config.decode = DecodeConfig{};
  SessionOptions so;
  so.n_ctx = o.n_prompt + o.n_positions + 1;
  so.n_batch = 512;
  so.engine = config;
  Session session(model, so);
  session.set_history(tokens.first(static_cast<size_t>(o.n_prompt)));
  for (int j = 0; j < o.n_positions; ++j) on_step(j, session.decode(tokens[static_cast<size_t>(o.n_prompt + j)]));
}

AccuracyProbe::AccuracyProbe(const Model& model, std::vector<int32_t> tokens, const EngineConfig& exact,
                             const ProbeOptions& o)
    : model_(model), tokens_(std::move(tokens)), options_(o), n_vocab_(model.config().n_vocab) {
  exact_logp_.resize(static_cast<size_t>(o.n_positions) * static_cast<size_t>(n_vocab_));
  exact_top_.resize(static_cast<size_t>(o.n_positions));
  run_probe(model_, tokens_, exact, o, [&](int j, std::span<const float> logits) {
    const RowSoftmax s = row_softmax(logits);
    float* out = exact_logp_.data() + static_cast<size_t>(j) * static_cast<size_t>(n_vocab_);
    for (int v = 0; v < n_vocab_; ++v)
      out[v] = logits[static_cast<size_t>(v)] - s.max - static_cast<float>(s.log_sum_exp);
    exact_top_[static_cast<size_t>(j)] = s.argmax;
    exact_nll_ += row_nll(s, logits, tokens_[static_cast<size_t>(o.n_prompt + j + 1)]);
  });
}

AccuracyFigures AccuracyProbe::compare(const EngineConfig& config) const {
  double kld = 0.0, nll = 0.0;
  int same = 0;
  run_probe(model_, tokens_, config, options_, [&](int j, std::span<const float> logits) {
    const RowSoftmax s = row_softmax(logits);
    const float* p = exact_logp_.data() + static_cast<size_t>(j) * static_cast<size_t>(n_vocab_);
    double kl = 0.0;
    for (int v = 0; v < n_vocab_; ++v) {
      // Both sides rounded by the same float expression: identical logits give 0 exactly.
      const double lp = p[v];
      const double lq = logits[static_cast<size_t>(v)] - s.max - static_cast<float>(s.log_sum_exp);
      kl += std::exp(lp) * (lp - lq);
    }
    kld += std::max(0.0, kl);  // rounding can take an identical pair a hair below 0
    nll += row_nll(s, logits, tokens_[static_cast<size_t>(options_.n_prompt + j + 1)]);
    same += s.argmax == exact_top_[static_cast<size_t>(j)] ? 1 : 0;
  });
  AccuracyFigures f;
  f.positions = options_.n_positions;
  f.kld = kld / options_.n_positions;
  f.top1 = static_cast<double>(same) / options_.n_positions;
  f.ppl_increase = std::exp((nll - exact_nll_) / options_.n_positions) - 1.0;
  return f;
}

}  // namespace kestrel
