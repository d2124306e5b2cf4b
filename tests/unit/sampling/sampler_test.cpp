// The Sampler facade and the edge cases of the chain, run on both kinds.
#include "sampling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "core/error.h"

namespace kestrel {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

class SamplerKinds : public ::testing::TestWithParam<SamplerKind> {
 protected:
  SamplingParams plain(uint64_t seed) const {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    p.kind = GetParam();
    return p;
  }
  std::vector<double> frequencies(const SamplingParams& p, const std::vector<float>& logits, int n_draws) const {
    Sampler s(p, static_cast<int>(logits.size()));
    std::vector<double> f(logits.size(), 0.0);
    for (int i = 0; i < n_draws; ++i) f[static_cast<size_t>(s.sample(logits))] += 1.0 / n_draws;
    return f;
  }
  // The set of tokens drawn in n_draws.
  std::map<int32_t, int> drawn(const SamplingParams& p, const std::vector<float>& logits, int n_draws) const {
    Sampler s(p, static_cast<int>(logits.size()));
    std::map<int32_t, int> out;
    for (int i = 0; i < n_draws; ++i) ++out[s.sample(logits)];
    return out;
  }
};

TEST_P(SamplerKinds, GreedyAndTopK1PickTheArgmax) {
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

TEST_P(SamplerKinds, TopK1AndGreedyTakeTheLowestIdAmongEqualMaxima) {
  std::vector<float> logits(1000, 0.0f);
  logits[700] = logits[300] = logits[999] = 5.0f;
  SamplingParams k1 = plain(3);
  k1.top_k = 1;
  EXPECT_EQ(drawn(k1, logits, 50), (std::map<int32_t, int>{{300, 50}}));
  SamplingParams g = plain(3);
  g.temperature = 0.0f;
  EXPECT_EQ(Sampler(g, 1000).sample(logits), 300);
}

TEST_P(SamplerKinds, UnfilteredDrawsFollowTheSoftmax) {
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, -1.0f, 0.5f};
  SamplingParams p = plain(3);
  p.temperature = 0.7f;
  const int n = 200000;
  auto f = frequencies(p, logits, n);
  double z = 0;
  for (float l : logits) z += std::exp(l / 0.7);
  for (size_t i = 0; i < logits.size(); ++i) {
    const double want = std::exp(logits[i] / 0.7) / z;
    // 5 standard deviations of a binomial proportion.
    EXPECT_NEAR(f[i], want, 5 * std::sqrt(want * (1 - want) / n)) << i;
  }
}

TEST_P(SamplerKinds, FiltersKeepExactlyTheRightSet) {
  // Probabilities 0.4, 0.3, 0.2, 0.1 (as logits of their logs).
  std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  {  // top-k 2 -> renormalised {0.4, 0.3}
    SamplingParams p = plain(4);
    p.top_k = 2;
    auto f = frequencies(p, logits, 100000);
    EXPECT_NEAR(f[0], 4.0 / 7, 0.01);
    EXPECT_EQ(f[2] + f[3], 0.0);
  }
  {  // top-p 0.65: 0.4 + 0.3 reaches it -> {0, 1}
    SamplingParams p = plain(5);
    p.top_p = 0.65f;
    auto f = frequencies(p, logits, 100000);
    EXPECT_EQ(f[2] + f[3], 0.0);
    EXPECT_NEAR(f[1], 3.0 / 7, 0.01);
  }
  {  // min-p 0.5: keep p >= 0.2 -> {0, 1, 2}
    SamplingParams p = plain(6);
    p.min_p = 0.5f;
    auto f = frequencies(p, logits, 100000);
    EXPECT_EQ(f[3], 0.0);
    EXPECT_NEAR(f[2], 2.0 / 9, 0.01);
  }
}

TEST_P(SamplerKinds, TopKKeepsTheLowestIdsOfATieAtTheBoundary) {
  // Token 5 leads; ids 2, 4, 6, 9 tie behind it: k = 3 keeps 5, 2, 4.
  std::vector<float> logits(12, -3.0f);
  logits[5] = 1.0f;
  for (int id : {9, 2, 6, 4}) logits[static_cast<size_t>(id)] = 0.5f;
  SamplingParams p = plain(7);
  p.top_k = 3;
  auto d = drawn(p, logits, 20000);
  EXPECT_EQ(d.size(), 3u);
  EXPECT_TRUE(d.count(5) && d.count(2) && d.count(4));
}

TEST_P(SamplerKinds, TopPCountsTiesOneByOneInIdOrder) {
  // Four equal tokens of 0.25 each (and a -inf one): p = 0.5 is reached after two.
  std::vector<float> logits = {-kInf, 0.0f, 0.0f, 0.0f, 0.0f};
  SamplingParams p = plain(8);
  p.top_p = 0.5f;
  auto d = drawn(p, logits, 20000);
  EXPECT_EQ(d.size(), 2u);
  EXPECT_TRUE(d.count(1) && d.count(2));
  // p just above 0.5 takes the third.
  p.top_p = 0.5001f;
  EXPECT_EQ(drawn(p, logits, 20000).size(), 3u);
}

TEST_P(SamplerKinds, MinPKeepsATokenExactlyAtTheThreshold) {
  SamplingParams p = plain(9);
  p.min_p = 0.25f;
  const float max = 2.0f;
  const float at = max + std::log(p.min_p);  // the chain's float arithmetic
  std::vector<float> logits = {0.0f, max, at, std::nextafter(at, -kInf), -5.0f};
  auto d = drawn(p, logits, 20000);
  EXPECT_EQ(d.size(), 2u);
  EXPECT_TRUE(d.count(1) && d.count(2));
}

TEST_P(SamplerKinds, MinPCanKeepOneToken) {
  std::vector<float> logits = {1.0f, 3.0f, 2.9f, 2.95f};
  for (float min_p : {0.99f, 1.5f}) {  // 1.5: a threshold above the maximum still keeps the first token
    SamplingParams p = plain(10);
    p.min_p = min_p;
    EXPECT_EQ(drawn(p, logits, 1000), (std::map<int32_t, int>{{1, 1000}})) << min_p;
  }
  // min-p 1 keeps every token equal to the maximum.
  SamplingParams p = plain(10);
  p.min_p = 1.0f;
  logits[3] = 3.0f;
  auto d = drawn(p, logits, 2000);
  EXPECT_EQ(d.size(), 2u);
  EXPECT_TRUE(d.count(1) && d.count(3));
}

TEST_P(SamplerKinds, KBeyondTheVocabularyAndPOfOneAreOff) {
  std::vector<float> logits = {0.0f, 1.0f, -1.0f};
  SamplingParams p = plain(11);
  p.top_k = 10;
  p.top_p = 1.0f;
  auto f = frequencies(p, logits, 100000);
  const double z = 1 + std::exp(1.0) + std::exp(-1.0);
  EXPECT_NEAR(f[2], std::exp(-1.0) / z, 0.005);
}

TEST_P(SamplerKinds, NegativeInfinityIsNeverDrawn) {
  std::vector<float> logits(300, -kInf);
  logits[17] = -50.0f;
  logits[250] = -50.5f;
  for (int k : {0, 5, 299}) {  // top-k keeping -inf tokens too
    SamplingParams p = plain(12);
    p.top_k = k;
    p.top_p = 0.999f;
    auto d = drawn(p, logits, 5000);
    EXPECT_EQ(d.size(), 2u) << k;
    EXPECT_TRUE(d.count(17) && d.count(250)) << k;
  }
  std::vector<float> one(300, -kInf);
  one[123] = 0.0f;
  EXPECT_EQ(drawn(plain(13), one, 100), (std::map<int32_t, int>{{123, 100}}));
}

TEST_P(SamplerKinds, BadLogitsAreErrors) {
  std::vector<float> nan = {0.0f, NAN, 1.0f};
  Sampler s(plain(14), 3);
  EXPECT_THROW(s.sample(nan), Error);
  EXPECT_THROW(s.sample(std::vector<float>{1.0f}), Error);
  EXPECT_THROW(s.sample(std::vector<float>(3, -kInf)), Error);
  EXPECT_THROW(s.sample(std::vector<float>{0.0f, kInf, 1.0f}), Error);
  SamplingParams g = plain(15);
  g.temperature = 0.0f;
  Sampler greedy(g, 3);
  EXPECT_THROW(greedy.sample(nan), Error);
  EXPECT_EQ(greedy.sample(std::vector<float>(3, -kInf)), 0);
  EXPECT_EQ(greedy.sample(std::vector<float>{0.0f, kInf, 1.0f}), 1);
  try {
    s.sample(nan);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token 1 is NaN"), std::string::npos) << e.what();
  }
  SamplingParams bad = plain(16);
  bad.top_p = NAN;
  EXPECT_THROW(Sampler(bad, 3), Error);
}

TEST_P(SamplerKinds, SameSeedSameSequence) {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(i * 0.1f) * 3;
  SamplingParams p;
  p.seed = 1234;
  p.kind = GetParam();
  Sampler a(p, 1000), b(p, 1000);
  std::vector<int32_t> first;
  for (int i = 0; i < 200; ++i) {
    first.push_back(a.sample(logits));
    ASSERT_EQ(first.back(), b.sample(logits));
  }
  a.reset();
  for (int i = 0; i < 200; ++i) ASSERT_EQ(a.sample(logits), first[static_cast<size_t>(i)]);
}

TEST_P(SamplerKinds, RepeatPenaltyLowersSeenTokens) {
  std::vector<float> logits = {2.0f, 1.99f};
  SamplingParams p = plain(7);
  p.temperature = 0.0f;
  p.repeat_penalty = 1.5f;
  Sampler s(p, 2);
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);
  // The input row is not modified.
  EXPECT_EQ(logits[0], 2.0f);
}

TEST_P(SamplerKinds, PenaltiesApplyBeforeTheFilters) {
  // Token 0 leads until penalised; with top-k 1 the penalty decides the token.
  std::vector<float> logits = {2.0f, 1.5f, -1.0f};
  SamplingParams p = plain(17);
  p.top_k = 1;
  p.presence_penalty = 1.0f;
  Sampler s(p, 3);
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);
}

INSTANTIATE_TEST_SUITE_P(Both, SamplerKinds, ::testing::Values(SamplerKind::Sort, SamplerKind::SortFree),
                         [](const auto& info) { return std::string(sampler_kind_name(info.param)); });

TEST(SamplerKind, NamesParseAndAutoResolves) {
  for (SamplerKind k : {SamplerKind::Sort, SamplerKind::SortFree, SamplerKind::Auto})
    EXPECT_EQ(parse_sampler_kind(sampler_kind_name(k)), k);
  EXPECT_THROW(parse_sampler_kind("quick"), Error);
  SamplingParams p;
  p.kind = SamplerKind::Auto;
  EXPECT_NE(Sampler(p, 10).kind(), SamplerKind::Auto);
  p.kind = SamplerKind::Sort;
  EXPECT_EQ(Sampler(p, 10).kind(), SamplerKind::Sort);
}

}  // namespace
}  // namespace kestrel
