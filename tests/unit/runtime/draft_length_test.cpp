// DraftLength against its closed form: expected tokens (1 - a^(k+1)) / (1 - a)
// over cost 1 + (beta + delta / t1) k, with t1 and beta the line through the
// pass times fed, the best k chosen, none when nothing beats plain decoding
// (and a probe of 1 after 16 such rounds, then 32, 64, up to every 128).
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/draft_length.h"

namespace kestrel {
namespace {

// Feeds rounds with a fixed pass cost t(n) = t1 (1 + beta (n - 1)) and
// drafting cost delta per token, where each round's draft of k is accepted
// up to `accepted`.
void feed(DraftLength& d, double t1, double beta, double delta, int k, int accepted, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    d.record_pass(1, t1);
    d.record_pass(k + 1, t1 * (1.0 + beta * k));
    d.record_round(k, delta * k, accepted);
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

// A draft model that keeps drafting nothing (unsure) costs its time for no
// tokens: drafting stops paying.
TEST(DraftLength, FruitlessModelAttemptsCountAsDraftCost) {
  DraftLength d(16);
  feed(d, 0.05, 0.05, 0.0, 8, 8, 100);  // everything accepted
  const int before = d.next();
  for (int i = 0; i < 100; ++i) d.record_round(0, 0.02, 0, true);  // the model ran, drafted nothing
  EXPECT_GT(before, 8);
  EXPECT_EQ(d.next(), 0);
}

}  // namespace
}  // namespace kestrel
