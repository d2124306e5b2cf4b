#pragma once
// The sorting-free sampler: the same distribution as the sort-based chain
// (sampling/sort_sampler.h: top-k -> top-p -> min-p on the temperature-1
// distribution, then temperature), drawn without sorting the vocabulary.
//
// prepare() (SIMD passes over the unsorted logits, no exp over the vocabulary
// unless top-p runs without top-k):
//   1. max, per-block maxima and the NaN check in one pass;
//   2. top-k: the k-th largest block maximum is a lower bound of the top-k
//      boundary (k blocks hold a value at least that large), so one compaction
//      pass that skips every block below it leaves a few times k candidates;
//      pivot selection (count above / equal to a pivot, keep one side) finds the
//      exact k-th token in the order (logit desc, id asc);
//   3. top-p's normaliser over the top-k set, then min-p as a logit threshold
//      (l >= max + log(min_p), the reference's float arithmetic), which cuts the
//      candidates without deciding top-p.
// draw(): exact rejection sampling for top-p over the candidates, FlashInfer's
// dual-pivot scheme in the token order: draw j in proportion to
// exp((l - max) / T) among the candidates above `low` (chunk sums, then a
// prefix search inside one chunk); j is in the top-p set iff the mass of the
// tokens above j is < p (the reference keeps a token while the cumulative sum
// before it is < p). If j is not, test the midpoint x = (l_j + high) / 2 in the
// same pass: if the tokens with l >= x are all inside, the boundary lies in
// (j, x): low = j, high = x; otherwise low = x. Every round drops j and halves
// [low, high], and a draw accepted from a superset of the kept set is a draw
// from the kept set, so the result is exact. What a draw learns (members above
// a key, non-members below one) is kept for the next draw of the same prepare.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "platform/cpu.h"
#include "sampling/params.h"
#include "sampling/sortfree_kernels.h"

namespace kestrel {

class SortFreeSampler {
 public:
  explicit SortFreeSampler(Isa isa = best_isa());

  // Same contract as SortSampler::prepare: logits [n_vocab] after penalties;
  // throws kestrel::Error on a NaN or +inf logit or when every logit is -inf.
  void prepare(std::span<const float> logits, const SamplingParams& params);
  // One token from the prepared distribution (one uniform per rejection round).
  int32_t draw(std::mt19937& rng);

  // Diagnostics: candidates left after prepare's filters (0 if the choice is
  // fixed), and rejection rounds run since prepare.
  int64_t candidates() const { return fixed_ >= 0 ? 0 : n_; }
  int64_t rounds() const { return rounds_; }
  Isa isa() const { return k_.isa; }

 private:
  sampling::Key select_kth(int64_t n, int64_t k);
  int64_t find(double target) const;

  const sampling::SortFreeKernels& k_;
  // Prepare's buffers, reused across calls.
  std::vector<float> block_max_, block_scratch_;
  std::vector<float> sel_l_;
  std::vector<int32_t> sel_id_;
  // The candidates in id order: logit, id, temperature-1 probability (top-p
  // only), weight exp((l - max) / T); sums_ holds their chunk sums above low_.
  std::vector<float> l_, p_, v_;
  std::vector<int32_t> id_;
  std::vector<double> sums_;
  int64_t n_ = 0;
  int32_t fixed_ = -1;  // >= 0: every draw returns it (greedy, or one token kept)
  bool top_p_on_ = false;
  double top_p_ = 1.0;
  // Pivot state: candidates are the tokens above low_; every token above
  // members_ is known to be kept; high_ bounds the boundary's logit.
  sampling::Key low_ = sampling::kEverything, members_ = sampling::kEverything;
  float high_ = 0.0f;
  double total_ = 0.0;  // sum of sums_ (valid when sums_valid_)
  bool sums_valid_ = false;
  int64_t rounds_ = 0;
};

}  // namespace kestrel
