#include "runtime/perplexity_math.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kestrel {

RowSoftmax row_softmax(std::span<const float> logits) {
  RowSoftmax s;
  if (logits.empty()) return s;
  s.max = logits[0];
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > s.max) {
      s.max = logits[i];
      s.argmax = static_cast<int32_t>(i);
    }
  }
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - s.max);  // float exp, double sum
  s.sum_exp = sum;
  s.log_sum_exp = std::log(sum);
  return s;
}

double row_nll(const RowSoftmax& s, std::span<const float> logits, int32_t target) {
  return static_cast<double>(s.max) + s.log_sum_exp - static_cast<double>(logits[target]);
}

float row_logp(const RowSoftmax& s, float logit) {
  return static_cast<float>(static_cast<double>(logit) - static_cast<double>(s.max) - s.log_sum_exp);
}

std::vector<int32_t> top_k_ids(std::span<const float> logits, int k) {
  const size_t n = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), logits.size());
  // "a before b" when a ranks higher: larger logit, then smaller id.
  auto higher = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::vector<int32_t> heap;  // min-heap on rank: heap.front() is the weakest kept id
  heap.reserve(n + 1);
  if (n == 0) return heap;
  for (size_t i = 0; i < logits.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    if (heap.size() < n) {
      heap.push_back(id);
      std::push_heap(heap.begin(), heap.end(), higher);
    } else if (higher(id, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), higher);
      heap.back() = id;
      std::push_heap(heap.begin(), heap.end(), higher);
    }
  }
  std::sort(heap.begin(), heap.end(), higher);
  return heap;
}

void bucket_logprobs(std::span<const float> logits, const RowSoftmax& s, std::span<const int32_t> ids, float* logp,
                     float* logp_rest) {
  std::vector<int32_t> sorted(ids.begin(), ids.end());
  std::sort(sorted.begin(), sorted.end());
  double rest = 0.0;
  size_t next = 0;  // walks `sorted` alongside the vocabulary
  for (size_t i = 0; i < logits.size(); ++i) {
    if (next < sorted.size() && sorted[next] == static_cast<int32_t>(i)) {
      ++next;
      continue;
    }
    rest += std::exp(logits[i] - s.max);
  }
  for (size_t j = 0; j < ids.size(); ++j) logp[j] = row_logp(s, logits[ids[j]]);
  *logp_rest = rest > 0.0 ? static_cast<float>(std::log(rest) - s.log_sum_exp)
                          : -std::numeric_limits<float>::infinity();
}

PplEstimate ppl_estimate(double nll_sum, double nll2_sum, int64_t n) {
  if (n <= 0) return {};
  const double mean = nll_sum / static_cast<double>(n);
  const double var = nll2_sum / static_cast<double>(n) - mean * mean;
  PplEstimate e{std::exp(mean), 0.0};
  if (var > 0.0 && n > 1) e.error = e.ppl * std::sqrt(var / static_cast<double>(n - 1));
  return e;
}

}  // namespace kestrel
