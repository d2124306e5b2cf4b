#include "sampling/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>

#include "core/error.h"

namespace kestrel {

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  return best;
}

Sampler::Sampler(const SamplingParams& params, int n_vocab) : params_(params), n_vocab_(n_vocab) {
  seed_ = params.seed == kRandomSeed
              ? static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())
              : params.seed;
  rng_.seed(static_cast<std::mt19937::result_type>(seed_));
}

void Sampler::reset() {
  history_.clear();
  rng_.seed(static_cast<std::mt19937::result_type>(seed_));
}

void Sampler::accept(int32_t token) {
  if (params_.repeat_last_n == 0) return;
  history_.push_back(token);
  const size_t window = params_.repeat_last_n < 0 ? static_cast<size_t>(n_vocab_) : params_.repeat_last_n;
  while (history_.size() > window) history_.pop_front();
}

void Sampler::apply_penalties(std::vector<Candidate>& c) const {
  const bool on = params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                  params_.presence_penalty != 0.0f;
  if (!on || history_.empty()) return;
  std::unordered_map<int32_t, int> count;
  for (int32_t t : history_) ++count[t];
  // Candidates are still indexed by token id here.
  for (const auto& [id, n] : count) {
    if (id < 0 || id >= static_cast<int32_t>(c.size())) continue;
    float& l = c[id].logit;
    l = l <= 0 ? l * params_.repeat_penalty : l / params_.repeat_penalty;
    l -= static_cast<float>(n) * params_.frequency_penalty + params_.presence_penalty;
  }
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (static_cast<int>(logits.size()) != n_vocab_)
    fail("sampler: got ", logits.size(), " logits for a vocabulary of ", n_vocab_);
  cand_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) fail("sampler: logit of token ", i, " is NaN");
    cand_[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
  }
  apply_penalties(cand_);

  if (params_.temperature <= 0.0f) {
    auto best = std::max_element(cand_.begin(), cand_.end(),
                                 [](const Candidate& a, const Candidate& b) { return a.logit < b.logit; });
    return best->id;
  }

  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t n = cand_.size();
  // top-k: keep the k largest (partial sort), in descending order.
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    n = params_.top_k;
    std::partial_sort(cand_.begin(), cand_.begin() + n, cand_.end(), by_logit);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  cand_.resize(n);

  auto softmax = [&](float temp) {
    const float max = cand_[0].logit;
    double sum = 0.0;
    for (auto& c : cand_) {
      c.p = std::exp((c.logit - max) / temp);
      sum += c.p;
    }
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
  };
  if (std::isinf(cand_[0].logit) && cand_[0].logit < 0) fail("sampler: every logit is -inf");

  // top-p: smallest prefix whose probability reaches p (at least one token).
  if (params_.top_p < 1.0f) {
    softmax(1.0f);
    double cum = 0.0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].p;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
  }
  // min-p: keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p).
  if (params_.min_p > 0.0f) {
    const float threshold = cand_[0].logit + std::log(params_.min_p);
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].logit >= threshold) ++keep;
    cand_.resize(keep);
  }

  softmax(params_.temperature);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  const double u = uni(rng_);
  double cum = 0.0;
  for (const auto& c : cand_) {
    cum += c.p;
    if (u < cum) return c.id;
  }
  return cand_.back().id;
}

}  // namespace kestrel
