#include "sampling/sampler.h"

#include <chrono>
#include <cmath>
#include <unordered_map>

#include "core/error.h"

namespace kestrel {

SamplerKind resolve_sampler_kind(SamplerKind kind) {
  return kind == SamplerKind::Auto ? SamplerKind::SortFree : kind;
}

std::string_view sampler_kind_name(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::Sort: return "sort";
    case SamplerKind::SortFree: return "sortfree";
    case SamplerKind::Auto: return "auto";
  }
  return "?";
}

SamplerKind parse_sampler_kind(std::string_view name) {
  for (SamplerKind k : {SamplerKind::Sort, SamplerKind::SortFree, SamplerKind::Auto})
    if (name == sampler_kind_name(k)) return k;
  fail("unknown sampler '", name, "' (sort, sortfree or auto)");
}

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  return best;
}

Sampler::Sampler(const SamplingParams& params, int n_vocab)
    : params_(params), n_vocab_(n_vocab), kind_(resolve_sampler_kind(params.kind)) {
  if (n_vocab < 1) fail("sampler: vocabulary of ", n_vocab, " tokens");
  if (std::isnan(params.temperature)) fail("sampler: temperature is NaN");
  if (std::isnan(params.top_p)) fail("sampler: top-p is NaN");
  if (std::isnan(params.min_p)) fail("sampler: min-p is NaN");
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

std::span<const float> Sampler::apply_penalties(std::span<const float> logits) {
  const bool on = params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                  params_.presence_penalty != 0.0f;
  if (!on || history_.empty()) return logits;
  penalized_.assign(logits.begin(), logits.end());
  std::unordered_map<int32_t, int> count;
  for (int32_t t : history_) ++count[t];
  for (const auto& [id, n] : count) {
    if (id < 0 || id >= static_cast<int32_t>(penalized_.size())) continue;
    float& l = penalized_[static_cast<size_t>(id)];
    l = l <= 0 ? l * params_.repeat_penalty : l / params_.repeat_penalty;
    l -= static_cast<float>(n) * params_.frequency_penalty + params_.presence_penalty;
  }
  return penalized_;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (static_cast<int>(logits.size()) != n_vocab_)
    fail("sampler: got ", logits.size(), " logits for a vocabulary of ", n_vocab_);
  const std::span<const float> l = apply_penalties(logits);
  if (kind_ == SamplerKind::SortFree) {
    sortfree_.prepare(l, params_);
    return sortfree_.draw(rng_);
  }
  sort_.prepare(l, params_);
  return sort_.draw(rng_);
}

int32_t Sampler::verify(std::span<const float> logits, std::span<const int32_t> drafts) {
  if (static_cast<int>(logits.size()) != n_vocab_)
    fail("sampler: got ", logits.size(), " logits for a vocabulary of ", n_vocab_);
  // Greedy: the argmax whatever the drafts, which sample() finds without
  // building the sorted chain (the same token: lowest id among equal maxima).
  if (params_.temperature <= 0.0f) return sample(logits);
  const std::span<const float> l = apply_penalties(logits);
  sort_.prepare(l, params_);
  double left = 1.0;  // the chain's mass without the drafts rejected so far
  for (const int32_t draft : drafts) {
    const double p = sort_.probability(draft);
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    if (uni(rng_) * left < p) return draft;
    left -= p;
  }
  return sort_.draw_excluding(drafts, rng_);
}

}  // namespace kestrel
