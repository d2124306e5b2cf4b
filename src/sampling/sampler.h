#pragma once
// The sampler the runtime uses: penalties on the raw logits, then one of two
// implementations of llama.cpp's chain (top-k -> top-p -> min-p -> temperature
// -> draw; top-p and min-p on the temperature-1 distribution):
//   SamplerKind::Sort      sampling/sort_sampler.h, the sort-based reference;
//   SamplerKind::SortFree  sampling/sortfree.h, pivot-based rejection sampling.
// Both draw from the same distribution (tests/unit/sampling check it with
// chi-square tests); they use the random stream differently.
#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "sampling/params.h"
#include "sampling/sort_sampler.h"
#include "sampling/sortfree.h"

namespace kestrel {

// What SamplerKind::Auto runs: SortFree. A static choice made from
// bench/micro/sampling_bench.cpp, not a per-run calibration: the two kinds draw
// different token sequences for one seed, and a timing-dependent choice would
// make a seeded run irreproducible (and differ between machines). Measured on
// the shared 2-core Sapphire Rapids VM (CPU time, medians of 5-7 repeats,
// load 8-11): the sorting-free sampler took 4-20 us per token where the
// sort-based one took 140-780 us (llama.cpp's default chain, vocabularies
// 32000-151936: 20-50x), and 0.1-0.6 ms vs 3.5-22 ms for top-p alone; it never
// lost, so there is nothing to calibrate.
SamplerKind resolve_sampler_kind(SamplerKind kind);
std::string_view sampler_kind_name(SamplerKind kind);  // "sort", "sortfree", "auto"
SamplerKind parse_sampler_kind(std::string_view name);  // throws kestrel::Error

class Sampler {
 public:
  // Throws kestrel::Error on a NaN temperature, top-p or min-p, or n_vocab < 1.
  Sampler(const SamplingParams& params, int n_vocab);

  // Picks the next token from raw logits [n_vocab]. Throws kestrel::Error on a
  // NaN logit (or +inf, unless greedy).
  int32_t sample(std::span<const float> logits);
  // Speculative sampling's verdict on a token a drafter proposed for these
  // logits (runtime/speculative.h): the token to emit. Drafts are
  // deterministic (greedy draft models, n-gram lookup: the draft distribution
  // is all on `draft`), so the draft is accepted with the probability the
  // chain gives it, and otherwise the token is drawn from the chain's
  // distribution without it. That is the rule of Leviathan et al. for a
  // one-hot draft: what it returns is distributed exactly as sample() would
  // draw. Greedy: the argmax (== draft when the draft is right). Uses the
  // sort-based chain whatever kind() is: same distribution, another stream.
  int32_t verify(std::span<const float> logits, int32_t draft) { return verify(logits, std::span(&draft, 1)); }
  // The same for several distinct drafts of one position (the children of a
  // node of a draft tree, runtime/draft_tree.h), tried in order: each is
  // accepted with its probability in the chain without the ones rejected
  // before it (p(d) / (1 - their mass)), and when all are rejected the token
  // is drawn from the chain without any of them. Every token then comes out
  // with the chain's own probability (SpecInfer's multi-draft rule for
  // deterministic drafts).
  int32_t verify(std::span<const float> logits, std::span<const int32_t> drafts);
  // Records a token the model produced or was fed (the penalties' history).
  void accept(int32_t token);
  void reset();

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }
  SamplerKind kind() const { return kind_; }  // Sort or SortFree (Auto resolved)

 private:
  // The logits the chain sees: `logits` itself, or a penalised copy.
  std::span<const float> apply_penalties(std::span<const float> logits);

  SamplingParams params_;
  int n_vocab_;
  uint64_t seed_;
  SamplerKind kind_;
  std::mt19937 rng_;
  std::deque<int32_t> history_;
  std::vector<float> penalized_;
  SortSampler sort_;
  SortFreeSampler sortfree_;
};

// Greedy: index of the largest logit (lowest index among ties).
int32_t argmax(std::span<const float> logits);

}  // namespace kestrel
