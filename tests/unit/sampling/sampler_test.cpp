#include "sampling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"

namespace kestrel {
namespace {

std::vector<double> draw_frequencies(const SamplingParams& p, const std::vector<float>& logits, int n_draws) {
  Sampler s(p, static_cast<int>(logits.size()));
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n_draws; ++i) f[s.sample(logits)] += 1.0 / n_draws;
  return f;
}

SamplingParams plain(uint64_t seed) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

}  // namespace

TEST(Sampler, GreedyAndTopK1PickTheArgmax) {
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  SamplingParams g = plain(1);
  g.temperature = 0.0f;
  EXPECT_EQ(Sampler(g, 4).sample(logits), 1);
  SamplingParams k1 = plain(2);
  k1.top_k = 1;
  Sampler s(k1, 4);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.sample(logits), 1);
  EXPECT_EQ(argmax(logits), 1);
}

TEST(Sampler, UnfilteredDrawsFollowTheSoftmax) {
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, -1.0f, 0.5f};
  SamplingParams p = plain(3);
  p.temperature = 0.7f;
  const int n = 200000;
  auto f = draw_frequencies(p, logits, n);
  double z = 0;
  for (float l : logits) z += std::exp(l / 0.7);
  for (size_t i = 0; i < logits.size(); ++i) {
    const double want = std::exp(logits[i] / 0.7) / z;
    // 5 standard deviations of a binomial proportion.
    EXPECT_NEAR(f[i], want, 5 * std::sqrt(want * (1 - want) / n)) << i;
  }
}

TEST(Sampler, FiltersKeepExactlyTheRightSet) {
  // Probabilities 0.4, 0.3, 0.2, 0.1 (as logits of their logs).
  std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  {  // top-k 2 -> renormalised {0.4, 0.3}
    SamplingParams p = plain(4);
    p.top_k = 2;
    auto f = draw_frequencies(p, logits, 100000);
    EXPECT_NEAR(f[0], 4.0 / 7, 0.01);
    EXPECT_EQ(f[2] + f[3], 0.0);
  }
  {  // top-p 0.65: 0.4 + 0.3 reaches it -> {0, 1}
    SamplingParams p = plain(5);
    p.top_p = 0.65f;
    auto f = draw_frequencies(p, logits, 100000);
    EXPECT_EQ(f[2] + f[3], 0.0);
    EXPECT_NEAR(f[1], 3.0 / 7, 0.01);
  }
  {  // min-p 0.5: keep p >= 0.2 -> {0, 1, 2}
    SamplingParams p = plain(6);
    p.min_p = 0.5f;
    auto f = draw_frequencies(p, logits, 100000);
    EXPECT_EQ(f[3], 0.0);
    EXPECT_NEAR(f[2], 2.0 / 9, 0.01);
  }
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(i * 0.1f) * 3;
  SamplingParams p;
  p.seed = 1234;
  Sampler a(p, 1000), b(p, 1000);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(a.sample(logits), b.sample(logits));
}

TEST(Sampler, RepeatPenaltyLowersSeenTokens) {
  std::vector<float> logits = {2.0f, 1.99f};
  SamplingParams p = plain(7);
  p.temperature = 0.0f;
  p.repeat_penalty = 1.5f;
  Sampler s(p, 2);
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, NanLogitIsAnError) {
  std::vector<float> logits = {0.0f, NAN, 1.0f};
  Sampler s(plain(8), 3);
  EXPECT_THROW(s.sample(logits), Error);
  EXPECT_THROW(s.sample(std::vector<float>{1.0f}), Error);
}

}  // namespace kestrel
