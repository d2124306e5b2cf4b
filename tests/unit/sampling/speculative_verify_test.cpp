// Sampler::verify, speculative sampling's acceptance rule for a one-hot draft
// (runtime/speculative decoding): whatever token the drafter proposed, the
// token verify() returns must be distributed exactly as the chain's
// distribution (computed in double by the test, exact_reference.h). 10^5
// draws per case, chi-square p > 0.001, no token outside the kept set; the
// acceptance rate must be the chain's probability of the draft.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "sampling/sampler.h"
#include "unit/sampling/exact_reference.h"

namespace kestrel::test {
namespace {

constexpr int64_t kDraws = 100000;
constexpr double kAlpha = 0.001;

SamplingParams chain(float temp, int k, float p, float min_p, uint64_t seed) {
  SamplingParams s;
  s.temperature = temp;
  s.top_k = k;
  s.top_p = p;
  s.min_p = min_p;
  s.seed = seed;
  return s;
}

// The first LmLike row from `seed` whose kept set float rounding cannot change.
std::vector<float> row(int n_vocab, const SamplingParams& p, uint64_t seed, Filtered* f) {
  for (uint64_t s = seed;; ++s) {
    auto l = make_logits(Shape::LmLike, n_vocab, s);
    *f = exact_filtered(l, p);
    if (f->top_p_margin > 1e-6 && f->min_p_margin > 1e-6 && f->ids.size() >= 3) return l;
  }
}

TEST(SpeculativeVerify, EmitsTheChainsDistributionWhateverTheDraft) {
  const int n_vocab = 512;
  for (const SamplingParams& p : {chain(0.8f, 40, 0.95f, 0.05f, 3), chain(1.5f, 0, 1.0f, 0.02f, 4)}) {
    Filtered f;
    const auto logits = row(n_vocab, p, 11, &f);
    // The likeliest token, one from the middle of the kept set, and one the
    // filters removed (always rejected: the residual is the whole distribution).
    int32_t outside = 0;
    while (std::find(f.ids.begin(), f.ids.end(), outside) != f.ids.end()) ++outside;
    for (const int32_t draft : {f.ids[0], f.ids[f.ids.size() / 2], outside}) {
      Sampler s(p, n_vocab);
      std::vector<int64_t> counts(n_vocab, 0);
      int64_t accepted = 0;
      for (int64_t i = 0; i < kDraws; ++i) {
        const int32_t t = s.verify(logits, draft);
        ++counts[static_cast<size_t>(t)];
        accepted += t == draft;
      }
      const ChiSquare r = chi_square(f, counts);
      EXPECT_EQ(r.outside, 0) << "draft " << draft;
      EXPECT_GT(r.p_value, kAlpha) << "draft " << draft << " chi2 " << r.stat << " df " << r.df;
      // Accepted with the chain's probability of the draft (4 standard deviations).
      double p_draft = 0.0;
      for (size_t i = 0; i < f.ids.size(); ++i)
        if (f.ids[i] == draft) p_draft = f.prob[i];
      const double sd = std::sqrt(p_draft * (1.0 - p_draft) / kDraws);
      EXPECT_NEAR(static_cast<double>(accepted) / kDraws, p_draft, 4.0 * sd + 1e-9) << "draft " << draft;
    }
  }
}

// The statistic has the power to see a rule that is slightly off: accepting
// the draft with probability p + 0.02 must fail the same test.
TEST(SpeculativeVerify, ABiasedRuleIsDetected) {
  const int n_vocab = 512;
  const SamplingParams p = chain(0.8f, 40, 0.95f, 0.05f, 5);
  Filtered f;
  const auto logits = row(n_vocab, p, 11, &f);
  const int32_t draft = f.ids[1];
  Sampler s(p, n_vocab);
  std::mt19937 extra(9);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<int64_t> counts(n_vocab, 0);
  for (int64_t i = 0; i < kDraws; ++i) {
    int32_t t = s.verify(logits, draft);
    if (t != draft && uni(extra) < 0.02) t = draft;  // 2 % more acceptances than the rule
    ++counts[static_cast<size_t>(t)];
  }
  EXPECT_LT(chi_square(f, counts).p_value, kAlpha);
}

// Several drafts for one position (a draft tree's children): the token that
// comes out still follows the chain, and each draft is taken with its own
// probability (the ones tried before it rejected first).
TEST(SpeculativeVerify, SeveralDraftsEmitTheChainsDistribution) {
  const int n_vocab = 512;
  const SamplingParams p = chain(0.9f, 40, 0.95f, 0.02f, 6);
  Filtered f;
  const auto logits = row(n_vocab, p, 21, &f);
  int32_t outside = 0;
  while (std::find(f.ids.begin(), f.ids.end(), outside) != f.ids.end()) ++outside;
  for (const std::vector<int32_t>& drafts :
       {std::vector<int32_t>{f.ids[0], f.ids[1]}, std::vector<int32_t>{f.ids[2], outside, f.ids[0]}}) {
    Sampler s(p, n_vocab);
    std::vector<int64_t> counts(n_vocab, 0);
    for (int64_t i = 0; i < kDraws; ++i) ++counts[static_cast<size_t>(s.verify(logits, drafts))];
    const ChiSquare r = chi_square(f, counts);
    EXPECT_EQ(r.outside, 0);
    EXPECT_GT(r.p_value, kAlpha) << "chi2 " << r.stat << " df " << r.df;
  }
  // Taking the second draft with its plain probability p instead of p / (1 -
  // the first's) once the first was rejected (else drawing without the first
  // only) is caught.
  Sampler s(p, n_vocab), one(p, n_vocab);
  std::vector<int64_t> counts(n_vocab, 0);
  const std::vector<int32_t> both = {f.ids[0], f.ids[1]};
  for (int64_t i = 0; i < kDraws; ++i) {
    int32_t t = s.verify(logits, std::span(both).first(1));
    if (t != f.ids[0]) t = one.verify(logits, f.ids[1]) == f.ids[1] ? f.ids[1] : t;
    ++counts[static_cast<size_t>(t)];
  }
  EXPECT_LT(chi_square(f, counts).p_value, kAlpha);
}

TEST(SpeculativeVerify, GreedyReturnsTheArgmax) {
  const auto logits = make_logits(Shape::Ties, 1000, 7);
  Sampler s(chain(0.0f, 40, 0.95f, 0.05f, 1), 1000);
  const int32_t best = argmax(logits);
  EXPECT_EQ(s.verify(logits, best), best);
  EXPECT_EQ(s.verify(logits, (best + 1) % 1000), best);
}

TEST(SpeculativeVerify, PenaltiesApplyAsInSample) {
  // With a repeat penalty on the likeliest token, greedy verify picks what
  // greedy sample picks.
  std::vector<float> logits(100, 0.0f);
  logits[3] = 2.0f;
  logits[7] = 1.9f;
  SamplingParams p = chain(0.0f, 40, 0.95f, 0.05f, 1);
  p.repeat_penalty = 1.5f;
  Sampler a(p, 100), b(p, 100);
  a.accept(3);
  b.accept(3);
  EXPECT_EQ(a.sample(logits), 7);
  EXPECT_EQ(b.verify(logits, 3), 7);
}

}  // namespace
}  // namespace kestrel::test
