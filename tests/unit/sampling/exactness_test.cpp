// Both samplers against the exact filtered distribution (computed in double by
// the test, exact_reference.h): 10^5 draws per case and sampler, a chi-square
// test (p > 0.001, bins merged to expected counts >= 5), and no draw outside
// the exact kept set. Then: the statistic does catch an off-by-one k and a
// slightly wrong p, and the per-call path (prepare for every draw) agrees too.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

#include "sampling/sampler.h"
#include "sampling/sort_sampler.h"
#include "sampling/sortfree.h"
#include "unit/sampling/exact_reference.h"

namespace kestrel::test {
namespace {

constexpr int64_t kDraws = 100000;
constexpr double kAlpha = 0.001;
// Further than this from a top-p or min-p boundary, float rounding in the
// samplers (~1e-7) cannot flip a decision the double reference makes.
constexpr double kMargin = 1e-6;

SamplingParams params(float temp, int k, float p, float min_p) {
  SamplingParams s;
  s.temperature = temp;
  s.top_k = k;
  s.top_p = p;
  s.min_p = min_p;
  return s;
}

struct Config {
  const char* name;
  SamplingParams p;
};
const Config kConfigs[] = {
    {"chain", params(0.8f, 40, 0.95f, 0.05f)},  // llama.cpp's defaults
    {"topk", params(1.0f, 50, 1.0f, 0.0f)},
    {"topp", params(1.2f, 0, 0.9f, 0.0f)},
    {"minp", params(1.5f, 0, 1.0f, 0.1f)},
    {"topk_topp", params(0.7f, 100, 0.8f, 0.0f)},  // top-p renormalised over the top-k set
    {"bigk_topp", params(1.0f, 1000, 0.98f, 0.0f)},  // k above the block count: selection over every token
};

std::vector<int64_t> sort_counts(const std::vector<float>& l, const SamplingParams& p, uint64_t seed) {
  SortSampler s;
  s.prepare(l, p);
  std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
  std::vector<int64_t> c(l.size(), 0);
  for (int64_t i = 0; i < kDraws; ++i) ++c[static_cast<size_t>(s.draw(rng))];
  return c;
}

std::vector<int64_t> sortfree_counts(const std::vector<float>& l, const SamplingParams& p, uint64_t seed,
                                     Isa isa, int64_t* rounds = nullptr) {
  SortFreeSampler s(isa);
  s.prepare(l, p);
  std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
  std::vector<int64_t> c(l.size(), 0);
  for (int64_t i = 0; i < kDraws; ++i) ++c[static_cast<size_t>(s.draw(rng))];
  if (rounds) *rounds = s.rounds();
  return c;
}

// The first row from `seed` on whose kept set float rounding cannot disagree.
std::vector<float> well_conditioned_row(Shape shape, int n_vocab, const SamplingParams& p, uint64_t seed, Filtered* f) {
  for (uint64_t s = seed;; ++s) {
    auto l = make_logits(shape, n_vocab, s);
    *f = exact_filtered(l, p);
    if (f->top_p_margin > kMargin && f->min_p_margin > kMargin) return l;
  }
}

void report(const char* who, const std::string& name, const Filtered& f, const ChiSquare& c, int64_t rounds = -1) {
  std::printf("  %-9s %-26s kept %6zu  bins %5d  chi2 %9.1f  df %5d  p %.4f  outside %lld", who, name.c_str(),
              f.ids.size(), c.bins, c.stat, c.df, c.p_value, static_cast<long long>(c.outside));
  if (rounds >= 0) std::printf("  rounds %lld", static_cast<long long>(rounds));
  std::printf("\n");
}

struct Case {
  Shape shape;
  int n_vocab;
  int config;
};

std::string case_name(const Case& c) {
  return shape_name(c.shape) + "_" + std::to_string(c.n_vocab) + "_" + kConfigs[c.config].name;
}

class Exactness : public ::testing::TestWithParam<Case> {};

TEST_P(Exactness, BothSamplersDrawTheExactDistribution) {
  const Case c = GetParam();
  const SamplingParams& p = kConfigs[c.config].p;
  Filtered f;
  const auto logits = well_conditioned_row(c.shape, c.n_vocab, p, 1000 + static_cast<uint64_t>(c.config), &f);
  // A stream per case and sampler: with one shared seed, every sort-based case
  // would map the same uniforms through its inverse CDF, and the statistics of
  // all cases would share that one sample's luck.
  const uint64_t seed = 1000 * static_cast<uint64_t>(c.n_vocab) + 10 * static_cast<uint64_t>(c.shape) + static_cast<uint64_t>(c.config);
  const ChiSquare a = chi_square(f, sort_counts(logits, p, 2 * seed));
  int64_t rounds = 0;
  const ChiSquare b = chi_square(f, sortfree_counts(logits, p, 2 * seed + 1, best_isa(), &rounds));
  report("sort", case_name(c), f, a);
  report("sortfree", case_name(c), f, b, rounds);
  EXPECT_EQ(a.outside, 0);
  EXPECT_EQ(b.outside, 0);
  EXPECT_GT(a.p_value, kAlpha) << "chi2 " << a.stat << " df " << a.df;
  EXPECT_GT(b.p_value, kAlpha) << "chi2 " << b.stat << " df " << b.df;
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (int n : {49152, 151936})
    for (Shape s : {Shape::Peaked, Shape::Flat, Shape::Zipf, Shape::Ties, Shape::LmLike})
      for (int cfg = 0; cfg < static_cast<int>(std::size(kConfigs)); ++cfg) out.push_back({s, n, cfg});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Cases, Exactness, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return case_name(info.param); });

// Every kernel level the host runs draws the same distribution.
TEST(ExactnessPerIsa, SortFreeOnEveryIsa) {
  for (Isa isa : supported_isas()) {
    for (Shape shape : {Shape::Ties, Shape::LmLike}) {
      for (int cfg : {0, 4}) {
        const SamplingParams& p = kConfigs[cfg].p;
        Filtered f;
        const auto logits = well_conditioned_row(shape, 49152, p, 77, &f);
        const ChiSquare b = chi_square(f, sortfree_counts(logits, p, 13, isa));
        report(std::string(isa_name(isa)).c_str(), shape_name(shape) + "_49152_" + kConfigs[cfg].name, f, b);
        EXPECT_EQ(b.outside, 0) << isa_name(isa);
        EXPECT_GT(b.p_value, kAlpha) << isa_name(isa) << " chi2 " << b.stat << " df " << b.df;
      }
    }
  }
}

// The statistic has the power to see the mistakes that matter: one token too
// many or too few at the top-k boundary, a top-p off by the gap to the next
// boundary token.
TEST(ExactnessPower, OffByOneKIsDetected) {
  const SamplingParams p = kConfigs[1].p;  // top-k 50 alone
  Filtered f;
  const auto logits = well_conditioned_row(Shape::Zipf, 49152, p, 5, &f);
  const auto sf = sortfree_counts(logits, p, 21, best_isa());
  const auto so = sort_counts(logits, p, 22);
  for (int dk : {-1, 0, 1}) {
    SamplingParams q = p;
    q.top_k += dk;
    const Filtered g = exact_filtered(logits, q);
    const ChiSquare a = chi_square(g, so), b = chi_square(g, sf);
    const std::string name = "zipf_49152_k" + std::to_string(q.top_k) + (dk ? "_wrong" : "_right");
    report("sort", name, g, a);
    report("sortfree", name, g, b);
    if (dk == 0) {
      EXPECT_GT(a.p_value, kAlpha);
      EXPECT_GT(b.p_value, kAlpha);
    } else {
      EXPECT_LT(a.p_value, kAlpha) << dk;
      EXPECT_LT(b.p_value, kAlpha) << dk;
    }
  }
}

TEST(ExactnessPower, SlightlyWrongPIsDetected) {
  const SamplingParams p = params(1.0f, 0, 0.9f, 0.0f);
  Filtered f;
  const auto logits = well_conditioned_row(Shape::LmLike, 49152, p, 5, &f);
  const auto sf = sortfree_counts(logits, p, 23, best_isa());
  const auto so = sort_counts(logits, p, 24);
  const ChiSquare a0 = chi_square(f, so), b0 = chi_square(f, sf);
  report("sort", "lmlike_49152_p0.9_right", f, a0);
  report("sortfree", "lmlike_49152_p0.9_right", f, b0);
  EXPECT_GT(a0.p_value, kAlpha);
  EXPECT_GT(b0.p_value, kAlpha);
  // The nearest p on either side that keeps one token more or one fewer.
  for (float dir : {-1.0f, 1.0f}) {
    SamplingParams q = p;
    Filtered g;
    for (int step = 1; step < 1000; ++step) {
      q.top_p = p.top_p + dir * 0.0005f * static_cast<float>(step);
      g = exact_filtered(logits, q);
      if (g.ids.size() != f.ids.size()) break;
    }
    ASSERT_EQ(g.ids.size() + (dir < 0 ? 1 : -1), f.ids.size());
    const ChiSquare a = chi_square(g, so), b = chi_square(g, sf);
    char name[64];
    std::snprintf(name, sizeof name, "lmlike_49152_p%.4f_wrong", static_cast<double>(q.top_p));
    report("sort", name, g, a);
    report("sortfree", name, g, b);
    EXPECT_LT(a.p_value, kAlpha) << q.top_p;
    EXPECT_LT(b.p_value, kAlpha) << q.top_p;
  }
}

// The facade's path: penalties, prepare and one draw per call (the draws
// above reuse one prepare; here nothing carries over between draws).
TEST(ExactnessPerCall, SamplerSampleDrawsTheExactDistribution) {
  struct PerCall {
    SamplerKind kind;
    Shape shape;
    int n_vocab;
    int config;
  };
  for (const PerCall& c : {PerCall{SamplerKind::SortFree, Shape::LmLike, 49152, 0},
                           PerCall{SamplerKind::SortFree, Shape::Ties, 49152, 4},
                           PerCall{SamplerKind::Sort, Shape::LmLike, 4096, 0},
                           PerCall{SamplerKind::Sort, Shape::Ties, 4096, 4}}) {
    SamplingParams p = kConfigs[c.config].p;
    p.kind = c.kind;
    p.seed = 31;
    Filtered f;
    const auto logits = well_conditioned_row(c.shape, c.n_vocab, p, 9, &f);
    Sampler s(p, c.n_vocab);
    std::vector<int64_t> counts(logits.size(), 0);
    for (int64_t i = 0; i < kDraws; ++i) ++counts[static_cast<size_t>(s.sample(logits))];
    const ChiSquare r = chi_square(f, counts);
    report(std::string(sampler_kind_name(c.kind)).c_str(),
           "per-call " + shape_name(c.shape) + "_" + std::to_string(c.n_vocab) + "_" + kConfigs[c.config].name, f, r);
    EXPECT_EQ(r.outside, 0);
    EXPECT_GT(r.p_value, kAlpha) << "chi2 " << r.stat << " df " << r.df;
  }
}

// Sampler::sample on the sort kind is prepare + draw: the draws above (one
// prepare, many draws) are the very tokens repeated calls would give.
TEST(ExactnessPerCall, SortDrawsRepeatSampleCalls) {
  SamplingParams p = kConfigs[0].p;
  p.kind = SamplerKind::Sort;
  p.seed = 5;
  const auto logits = make_logits(Shape::LmLike, 49152, 3);
  Sampler s(p, 49152);
  SortSampler sorted;
  sorted.prepare(logits, p);
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(s.sample(logits), sorted.draw(rng)) << i;
}

TEST(ChiSquareReference, SurvivalFunctionKnownValues) {
  // Q(df/2, x/2) at the 0.05 and 0.001 critical values of chi-square tables.
  EXPECT_NEAR(gamma_q(0.5, 3.841 / 2), 0.05, 1e-4);
  EXPECT_NEAR(gamma_q(5.0, 18.307 / 2), 0.05, 1e-4);
  EXPECT_NEAR(gamma_q(50.0, 149.449 / 2), 0.001, 1e-5);
  EXPECT_NEAR(gamma_q(1.0, 2.0), std::exp(-2.0), 1e-12);  // df 2: Q = e^(-x/2)
  // Large df: the statistic at its mean is near the median.
  EXPECT_NEAR(gamma_q(5000.0, 5000.0), 0.5, 0.01);
}

}  // namespace
}  // namespace kestrel::test
