#pragma once
// The sampler chain, in llama.cpp's default order: penalties -> top-k -> top-p
// -> min-p -> temperature -> draw. The filters here sort candidates (a partial
// sort for top-k); this is the exact reference the sorting-free sampler is
// checked against.
#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

#include "sampling/params.h"

namespace kestrel {

class Sampler {
 public:
  Sampler(const SamplingParams& params, int n_vocab);

  // Picks the next token from raw logits [n_vocab]. Throws kestrel::Error on NaN.
  int32_t sample(std::span<const float> logits);
  // Records a token the model produced or was fed (the penalties' history).
  void accept(int32_t token);
  void reset();

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  void apply_penalties(std::vector<Candidate>& c) const;

  SamplingParams params_;
  int n_vocab_;
  uint64_t seed_;
  std::mt19937 rng_;
  std::deque<int32_t> history_;
  std::vector<Candidate> cand_;
};

// Greedy: index of the largest logit (lowest index among ties).
int32_t argmax(std::span<const float> logits);

}  // namespace kestrel
