// DraftLength against its closed form: expected tokens (1 - a^(k+1)) / (1 - a)
// over cost 1 + (beta + delta / t1) k, with t1 and beta the line through the
// pass times fed, the best k chosen, none when nothing beats plain decoding
// (and a probe of 1 after 16 such rounds, then 32, 64, up to every 128).
#include "runtime/draft_length.h"

#include <gtest/gtest.h>

#include <cmath>

#include "runtime/drafter.h"

namespace kestrel {
namespace {

// Feeds rounds with a fixed pass cost t(n) = t1 (1 + beta (n - 1)) and
// drafting cost delta per token, where each round's draft of k is accepted
// up to `accepted`.
void feed(DraftLength& d, double t1, double beta, double delta, int k, int accepted, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    d.record_pass(1, t1);
    d.record_pass(k + 1, t1 * (1.0 + beta * k));
    d.record_round(k, delta * k, accepted, accepted < k);
  }
}

TEST(DraftLength, GainIsTheClosedForm) {
  DraftLength d(16);
  // Many rounds of 4 drafted, 3 accepted: a -> 3 / (3 + 1) = 0.75.
  feed(d, 0.05, 0.1, 0.0, 4, 3, 300);
  const double a = 0.75, beta = 0.1;
  for (int k : {1, 2, 5, 10}) {
    const double want = (1.0 - std::pow(a, k + 1)) / (1.0 - a) / (1.0 + beta * k);
    EXPECT_NEAR(d.gain(k), want, 1e-6) << k;
  }
  EXPECT_EQ(d.gain(0), 1.0);
  // The best k of the closed form.
  int best = 0;
  double g = 1.0;
  for (int k = 1; k <= 16; ++k) {
    const double v = (1.0 - std::pow(a, k + 1)) / (1.0 - a) / (1.0 + beta * k);
    if (v > g) best = k, g = v;
  }
  EXPECT_EQ(d.next(), best);
}

TEST(DraftLength, DraftCostCountsAgainstLongDrafts) {
  DraftLength cheap(16), costly(16);
  feed(cheap, 0.05, 0.05, 0.0, 8, 7, 300);
  feed(costly, 0.05, 0.05, 0.02, 8, 7, 300);  // a draft token costs 0.4 of a pass
  EXPECT_GT(cheap.next(), costly.next());
  EXPECT_GT(costly.next(), 0);
}

TEST(DraftLength, TurnsOffWhenDraftsDoNotPayAndProbesAgain) {
  DraftLength d(16);
  feed(d, 0.05, 0.3, 0.02, 4, 0, 100);  // never accepted, costly
  int probes = 0;
  for (int i = 0; i < 16 + 32 + 64 + 128 + 128; ++i) probes += d.next();
  EXPECT_EQ(probes, 5);  // a draft of 1 after 16 rounds, 32, 64, then every 128
}

// Slow start: the first draft is one token, and each draft at most twice
// the longest one before it, up to the maximum.
TEST(DraftLength, StartsShortAndDoublesTheLongestDraft) {
  DraftLength d(16);
  EXPECT_EQ(d.next(), 1);  // the prior (a = 0.8, beta = 0.1) would take more
  int k = 1;
  for (int want : {2, 4, 8, 16, 16}) {
    d.record_pass(k + 1, 0.05);
    d.record_round(k, 0.0, k, false);  // everything accepted: longer pays
    k = d.next();
    EXPECT_EQ(k, want);
  }
}

// Where a drafted token costs as much as a pass, no acceptance can pay:
// the policy is off for good, not probed (a probe of a draft model costs
// its catching up with the tokens decoded since).
TEST(DraftLength, NoProbesWhereNoAcceptanceCouldPay) {
  DraftLength d(16), e(16);
  feed(d, 0.05, 0.6, 0.025, 4, 0, 100);  // token cost 0.6 + 0.5: above 1
  feed(e, 0.05, 0.6, 0.01, 4, 0, 100);   // 0.6 + 0.2: pays at acceptance 0.9
  EXPECT_FALSE(d.could_pay());
  EXPECT_TRUE(e.could_pay());
  int probes_d = 0, probes_e = 0;
  for (int i = 0; i < 16 + 32 + 64; ++i) probes_d += d.next(), probes_e += e.next();
  EXPECT_EQ(probes_d, 0);
  EXPECT_EQ(probes_e, 3);
}

// A draft model that keeps drafting nothing (unsure) costs its time for no
// tokens: drafting stops paying.
TEST(DraftLength, FruitlessModelAttemptsCountAsDraftCost) {
  DraftLength d(16);
  feed(d, 0.05, 0.05, 0.0, 8, 8, 100);  // everything accepted
  const int before = d.next();
  for (int i = 0; i < 100; ++i) d.record_round(0, 0.02, 0, false, true);  // the model ran, drafted nothing
  EXPECT_GT(before, 8);
  EXPECT_EQ(d.next(), 0);
}

TEST(DraftLength, TokenCostIsBetaPlusDraftTimeOverAPass) {
  DraftLength d(16);
  EXPECT_NEAR(d.token_cost(), 0.1, 1e-12);  // the prior beta, nothing drafted yet
  feed(d, 0.05, 0.2, 0.02, 4, 3, 300);
  EXPECT_NEAR(d.token_cost(), 0.2 + 0.02 / 0.05, 1e-6);
}

// The slope of the pass times is the machine's: plain passes (one size)
// after drafting rounds keep it, so a policy that turned off because batches
// cost much stays off, instead of drafting again on the prior's cheap ones.
TEST(DraftLength, KeepsTheSlopeThroughPlainPasses) {
  DraftLength d(16);
  feed(d, 0.05, 0.6, 0.02, 3, 2, 100);  // a = 2/3; a row costs 0.6 of a pass, a draft token 0.4
  EXPECT_NEAR(d.token_cost(), 0.6 + 0.4, 1e-6);
  EXPECT_EQ(d.next(), 0);  // (1 + a) / 2 < 1
  for (int i = 0; i < 100; ++i) d.record_pass(1, 0.05);
  EXPECT_NEAR(d.token_cost(), 0.6 + 0.4, 1e-6);
  EXPECT_EQ(d.next(), 0);  // with the prior's 0.1 it would draft: (1 + a) / 1.5 > 1
}

// DraftStop's rule: never before n_min tokens; else stop before a token below
// p_min, or one that would take the draft's probability (the product of its
// tokens') below the floor.
TEST(DraftStop, StopsWhereThePathProbabilityFallsBelowTheFloor) {
  DraftStop s(0, 0.0f);
  EXPECT_FALSE(s.scores());  // nothing to compute without p_min or a floor
  s.set_path_floor(0.3);
  EXPECT_TRUE(s.scores());
  s.start();
  EXPECT_FALSE(s.stop(0, 0.9f));  // 0.9
  EXPECT_FALSE(s.stop(1, 0.8f));  // 0.72
  EXPECT_FALSE(s.stop(2, 0.5f));  // 0.36
  EXPECT_TRUE(s.stop(3, 0.8f));   // 0.288 < 0.3
  s.start();                      // a new draft starts from 1
  EXPECT_FALSE(s.stop(0, 0.31f));
  EXPECT_TRUE(s.stop(1, 0.9f));  // 0.279

  DraftStop p(2, 0.5f);  // p_min per token, and two tokens whatever they score
  p.set_path_floor(0.2);
  p.start();
  EXPECT_FALSE(p.stop(0, 0.1f));  // below both, but inside n_min
  EXPECT_FALSE(p.stop(1, 0.9f));
  EXPECT_TRUE(p.stop(2, 0.95f));  // the path 0.1 * 0.9 * 0.95 < 0.2
  p.set_path_floor(0.0);
  p.start();
  EXPECT_FALSE(p.stop(0, 0.6f));
  EXPECT_FALSE(p.stop(1, 0.6f));
  EXPECT_FALSE(p.stop(2, 0.6f));
  EXPECT_TRUE(p.stop(3, 0.4f));  // below p_min
}

}  // namespace
}  // namespace kestrel
