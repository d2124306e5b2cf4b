// OrthogonalTransform against its own dense matrix built column by column and
// against the closed-form properties: QᵀQ = I, |Q_ij| = 1/sqrt(n) for a pure
// Hadamard size, and the fast transform equal to the dense product.
#include "model/orthogonal_transform.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"

namespace kestrel {
namespace {

class OrthogonalSizes : public ::testing::TestWithParam<int64_t> {};

TEST_P(OrthogonalSizes, IsOrthogonalAndMatchesItsDenseMatrix) {
  const int64_t n = GetParam();
  const OrthogonalTransform t(n, 1234);
  EXPECT_EQ(t.power_of_two() * t.odd_factor(), n);
  EXPECT_EQ(t.odd_factor() % 2, 1);
  const std::vector<float> q = t.dense();
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0.0;  // (QᵀQ)_ij
      for (int64_t k = 0; k < n; ++k) dot += double{q[k * n + i]} * q[k * n + j];
      worst = std::max(worst, std::fabs(dot - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(worst, 2e-5) << "QᵀQ is not the identity, n = " << n;

  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<size_t>(n)), w;
  for (float& x : v) x = normal(rng);
  w = v;
  t.apply(w.data());
  for (int64_t i = 0; i < n; ++i) {
    double ref = 0.0;
    for (int64_t k = 0; k < n; ++k) ref += double{q[i * n + k]} * v[k];
    EXPECT_NEAR(w[i], ref, 1e-4) << "Q v at " << i << ", n = " << n;
  }
  std::vector<float> u = v;
  t.apply_transposed(u.data());
  for (int64_t i = 0; i < n; ++i) {
    double ref = 0.0;  // (Qᵀ v)_i
    for (int64_t k = 0; k < n; ++k) ref += double{q[k * n + i]} * v[k];
    EXPECT_NEAR(u[i], ref, 1e-4) << "Qᵀ v at " << i << ", n = " << n;
  }
  t.apply_transposed(w.data());
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(w[i], v[i], 1e-4) << "Qᵀ Q v != v at " << i;
}

INSTANTIATE_TEST_SUITE_P(Sizes, OrthogonalSizes, ::testing::Values(1, 2, 7, 64, 96, 576));

TEST(OrthogonalTransform, PowerOfTwoSizesAreRandomSignHadamard) {
  const OrthogonalTransform t(16, 5);
  EXPECT_EQ(t.odd_factor(), 1);
  for (float x : t.dense()) EXPECT_NEAR(std::fabs(x), 0.25f, 1e-6);
}

TEST(OrthogonalTransform, SeedsGiveDifferentRotations) {
  EXPECT_NE(OrthogonalTransform(96, 1).dense(), OrthogonalTransform(96, 2).dense());
  EXPECT_EQ(OrthogonalTransform(96, 3).dense(), OrthogonalTransform(96, 3).dense());
  EXPECT_THROW(OrthogonalTransform(0, 1), Error);
}

}  // namespace
}  // namespace kestrel
