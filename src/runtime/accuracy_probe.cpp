#include "runtime/accuracy_probe.h"

#include <algorithm>
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

RowComparison compare_logits(std::span<const float> exact, std::span<const float> other, int32_t target) {
  if (exact.size() != other.size()) fail("compare_logits: rows of ", exact.size(), " and ", other.size(), " logits");
  const RowSoftmax p = row_softmax(exact), q = row_softmax(other);
  const float lse_p = static_cast<float>(p.log_sum_exp), lse_q = static_cast<float>(q.log_sum_exp);
  double kl = 0.0;
  for (size_t v = 0; v < exact.size(); ++v) {
    const double lp = exact[v] - p.max - lse_p;
    const double lq = other[v] - q.max - lse_q;
    kl += std::exp(lp) * (lp - lq);
  }
  RowComparison r;
  r.kld = std::max(0.0, kl);  // rounding can take a near-identical pair a hair below 0
  r.same_top = p.argmax == q.argmax;
  if (target >= 0) {
    r.nll_exact = row_nll(p, exact, target);
    r.nll_other = row_nll(q, other, target);
  }
  return r;
}

AccuracyProbe::AccuracyProbe(const Model& model, std::vector<int32_t> tokens, const EngineConfig& exact,
                             const ProbeOptions& o)
    : model_(model), tokens_(std::move(tokens)), options_(o), n_vocab_(model.config().n_vocab) {
  exact_logits_.resize(static_cast<size_t>(o.n_positions) * static_cast<size_t>(n_vocab_));
  run_probe(model_, tokens_, exact, o, [&](int j, std::span<const float> logits) {
    std::copy(logits.begin(), logits.end(), exact_logits_.begin() + static_cast<std::ptrdiff_t>(j) * n_vocab_);
  });
}

AccuracyFigures AccuracyProbe::compare(const EngineConfig& config) const {
  double kld = 0.0, nll = 0.0, nll_exact = 0.0;
  int same = 0;
  run_probe(model_, tokens_, config, options_, [&](int j, std::span<const float> logits) {
    const std::span<const float> exact(exact_logits_.data() + static_cast<size_t>(j) * static_cast<size_t>(n_vocab_),
                                       static_cast<size_t>(n_vocab_));
    const RowComparison c = compare_logits(exact, logits, tokens_[static_cast<size_t>(options_.n_prompt + j + 1)]);
    kld += c.kld;
    nll += c.nll_other;
    nll_exact += c.nll_exact;
    same += c.same_top ? 1 : 0;
  });
  AccuracyFigures f;
  f.positions = options_.n_positions;
  f.kld = kld / options_.n_positions;
  f.top1 = static_cast<double>(same) / options_.n_positions;
  f.ppl_increase = std::exp((nll - nll_exact) / options_.n_positions) - 1.0;
  return f;
}

}  // namespace kestrel
