// The gated GELU (ops/gelu.h) against the tanh formula in double: the F16 table
// is off by no more than rounding x to F16 (|gelu'| <= 1.13) and the result to
// F16 allow; the branches at +-10; geglu multiplies by up exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/gelu.h"

namespace kestrel {
namespace {

TEST(Gelu, FormulaAtKnownPoints) {
  // gelu(0) = 0, gelu(1) = 0.841192 (tanh approximation), gelu(-1) = -0.158808.
  EXPECT_EQ(gelu_tanh_exact(0.0f), 0.0f);
  EXPECT_NEAR(gelu_tanh_exact(1.0f), 0.8411920f, 1e-6);
  EXPECT_NEAR(gelu_tanh_exact(-1.0f), -0.1588080f, 1e-6);
  EXPECT_NEAR(gelu_tanh_exact(3.0f), 2.9963627f, 1e-6);
}

TEST(Gelu, TableWithinF16RoundingOfTheFormula) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-12.0f, 12.0f);
  double worst = 0;
  float worst_x = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = u(rng);
    const double exact = gelu_tanh_exact(x);
    const double got = gelu_tanh_f16_table(x);
    const double bound = 1.13 * std::fabs(x) * std::ldexp(1.0, -11) + std::fabs(exact) * std::ldexp(1.0, -11) + 1e-7;
    if (std::fabs(got - exact) - bound > worst) {
      worst = std::fabs(got - exact) - bound;
      worst_x = x;
    }
  }
  EXPECT_LE(worst, 0.0) << "worst excess over the bound at x = " << worst_x;
  EXPECT_EQ(gelu_tanh_f16_table(-10.0f), 0.0f);
  EXPECT_EQ(gelu_tanh_f16_table(-50.0f), 0.0f);
  EXPECT_EQ(gelu_tanh_f16_table(10.0f), 10.0f);
  EXPECT_EQ(gelu_tanh_f16_table(37.5f), 37.5f);
}

TEST(Gelu, GegluIsGeluTimesUp) {
  std::mt19937 rng(5);
  std::normal_distribution<float> n(0.0f, 4.0f);
  std::vector<float> g(1000), up(1000);
  for (auto& x : g) x = n(rng);
  for (auto& x : up) x = n(rng);
  std::vector<float> out = g;
  geglu_inplace(out.data(), up.data(), static_cast<int64_t>(out.size()));
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(out[i], gelu_tanh_f16_table(g[i]) * up[i]) << i;
}

}  // namespace
}  // namespace kestrel
