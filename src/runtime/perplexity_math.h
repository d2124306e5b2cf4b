#pragma once
// Per-row softmax arithmetic shared by perplexity and KL divergence. A row is
// one position's logits, [n_vocab] floats. Sums are accumulated in double over
// float exponentials of (logit - max), which is how llama-perplexity sums them,
// so the two tools agree to the last printed digit on the same logits.
#include <cstdint>
#include <span>
#include <vector>

namespace kestrel {

struct RowSoftmax {
  float max = 0.0f;
  int32_t argmax = 0;     // first index holding the maximum
  double sum_exp = 0.0;   // sum over the row of exp(logit - max)
  double log_sum_exp = 0.0;  // log(sum_exp)
};

RowSoftmax row_softmax(std::span<const float> logits);

// -log p(target) in double: max + log(sum_exp) - logit[target].
double row_nll(const RowSoftmax& s, std::span<const float> logits, int32_t target);

// log p(id), rounded to float. Every log-prob that enters a KL divergence goes
// through this one rounding, so identical logits give identical log-probs.
float row_logp(const RowSoftmax& s, float logit);

// PPL = exp(mean NLL) over n tokens and llama-perplexity's error of it,
// PPL * sqrt(var(NLL) / (n - 1)) (0 for fewer than 2 tokens or no variance).
struct PplEstimate {
  double ppl = 0.0;
  double error = 0.0;
};
PplEstimate ppl_estimate(double nll_sum, double nll2_sum, int64_t n);

// The k largest logits' ids, ordered by logit descending and then by id
// ascending (so ids[0] == argmax). k is clamped to the row length.
std::vector<int32_t> top_k_ids(std::span<const float> logits, int k);

// Truncates a row to the buckets {ids[0], ..., ids[k-1], rest}: writes
// log p(ids[i]) to logp[i] and log p(everything else) to *logp_rest, the rest
// mass summed directly over the other tokens (no 1 - sum cancellation).
// logp_rest is -inf when ids cover the whole vocabulary. ids must be distinct
// and in range.
void bucket_logprobs(std::span<const float> logits, const RowSoftmax& s, std::span<const int32_t> ids,
                     float* logp, float* logp_rest);

}  // namespace kestrel
