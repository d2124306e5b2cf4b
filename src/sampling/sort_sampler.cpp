#include "sampling/sort_sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kestrel {

void SortSampler::prepare(std::span<const float> logits, const SamplingParams& params) {
  fixed_ = -1;
  cand_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) fail("sampler: logit of token ", i, " is NaN");
    cand_[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
  }
  if (cand_.empty()) fail("sampler: no logits");

  if (params.temperature <= 0.0f) {
    // max_element keeps the first of equal maxima: the lowest id.
    fixed_ = std::max_element(cand_.begin(), cand_.end(), [](const Candidate& a, const Candidate& b) {
               return a.logit < b.logit;
             })->id;
    return;
  }

  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t n = cand_.size();
  // top-k: keep the k largest (partial sort), in descending order.
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n) {
    n = params.top_k;
    std::partial_sort(cand_.begin(), cand_.begin() + n, cand_.end(), by_logit);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  cand_.resize(n);

  if (std::isinf(cand_[0].logit)) {
    if (cand_[0].logit < 0) fail("sampler: every logit is -inf");
    fail("sampler: logit of token ", cand_[0].id, " is +inf");
  }
  auto softmax = [&](float temp) {
    const float max = cand_[0].logit;
    double sum = 0.0;
    for (auto& c : cand_) {
      c.p = std::exp((c.logit - max) / temp);
      sum += c.p;
    }
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
  };

  // top-p: smallest prefix whose probability reaches p (at least one token).
  if (params.top_p < 1.0f) {
    softmax(1.0f);
    double cum = 0.0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].p;
      if (cum >= params.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
  }
  // min-p: keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p).
  if (params.min_p > 0.0f) {
    const float threshold = cand_[0].logit + std::log(params.min_p);
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].logit >= threshold) ++keep;
    cand_.resize(keep);
  }

  softmax(params.temperature);
  cum_.resize(cand_.size());
  double cum = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) cum_[i] = cum += cand_[i].p;
}

int32_t SortSampler::draw(std::mt19937& rng) const {
  if (fixed_ >= 0) return fixed_;
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  const double u = uni(rng);
  // The first i with u < cum_[i]: what a linear scan returns, as a binary
  // search (cum_ never decreases: each step adds a non-negative float).
  const auto it = std::upper_bound(cum_.begin(), cum_.end(), u);
  if (it != cum_.end()) return cand_[static_cast<size_t>(it - cum_.begin())].id;
  // u beyond the rounded total: the last token that has any probability (never
  // a -inf logit kept by top-k, whose p is 0).
  size_t last = cand_.size() - 1;
  while (last > 0 && cand_[last].p <= 0.0f) --last;
  return cand_[last].id;
}

double SortSampler::probability(int32_t id) const {
  if (fixed_ >= 0) return id == fixed_ ? 1.0 : 0.0;
  for (const Candidate& c : cand_)
    if (c.id == id) return c.p;
  return 0.0;
}

int32_t SortSampler::draw_excluding(std::span<const int32_t> ids, std::mt19937& rng) const {
  if (fixed_ >= 0) return fixed_;
  auto excluded = [&](int32_t id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); };
  double total = 0.0;
  for (const Candidate& c : cand_)
    if (!excluded(c.id)) total += c.p;
  if (!(total > 0.0)) fail("sampler: no token left once the drafts' ", ids.size(), " token(s) are taken out");
  std::uniform_real_distribution<double> uni(0.0, total);
  const double u = uni(rng);
  double cum = 0.0;
  int32_t last = -1;
  for (const Candidate& c : cand_) {
    if (c.p <= 0.0f || excluded(c.id)) continue;
    cum += c.p;
    last = c.id;
    if (u < cum) return c.id;
  }
  return last;  // u beyond the rounded sum
}

}  // namespace kestrel
