#pragma once
// The sort-based reference chain, in llama.cpp's default order: top-k -> top-p
// -> min-p -> temperature -> draw (penalties are applied before, by Sampler).
// Top-p and min-p see the temperature-1 distribution; the temperature is applied
// last. Candidates are ordered by (logit descending, token id ascending), so
// among equal logits the lower ids are kept first. This is the exact reference
// the sorting-free sampler (sampling/sortfree.h) is checked against.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "sampling/params.h"

namespace kestrel {

class SortSampler {
 public:
  // Filters logits [n_vocab] (penalties already applied) and builds the
  // distribution draw() samples from. Throws kestrel::Error on a NaN or +inf
  // logit, or when every logit is -inf (greedy accepts +inf and all -inf).
  void prepare(std::span<const float> logits, const SamplingParams& params);
  // One token from the prepared distribution (one uniform from rng unless greedy,
  // as before the split into prepare/draw); repeatable without re-preparing.
  int32_t draw(std::mt19937& rng) const;

  // The prepared distribution's probability of `id` (greedy: 1 for the
  // chosen token, 0 for the others).
  double probability(int32_t id) const;
  // One token from the prepared distribution with `ids` taken out and the
  // rest renormalised: speculative sampling's residual for drafts that
  // proposed each of `ids` with certainty (Sampler::verify). Greedy: the
  // chosen token. Throws when nothing else had any probability.
  int32_t draw_excluding(std::span<const int32_t> ids, std::mt19937& rng) const;

  // How many tokens the filters kept (0 after a greedy prepare).
  size_t kept() const { return fixed_ >= 0 ? 0 : cand_.size(); }

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  std::vector<Candidate> cand_;
  std::vector<double> cum_;  // cum_[i] = p_0 + ... + p_i, summed in order, as the linear draw would
  int32_t fixed_ = -1;       // >= 0: greedy; every draw returns it without using the stream
};

}  // namespace kestrel
