// FlatQuant's transform against brute force: the Kronecker row kernel equals
// (x ⊙ s) times the dense n x n matrix P1 ⊗ P2 built entry by entry; the
// weight side undoes it (x' · w' = x · w within float bounds); Q4_0 clipping
// gives the codes of the clipped grid; bad factors are refused.
#include "model/flat_transform.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "kernels/quant_kernels.h"
#include "model/flatquant_fold.h"

namespace kestrel {
namespace {

std::vector<float> normal(size_t n, std::mt19937_64& rng, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A well-conditioned random factor: identity plus noise.
std::vector<float> factor(int n, std::mt19937_64& rng) {
  std::vector<float> p = normal(static_cast<size_t>(n) * n, rng, 0.3f / std::sqrt(static_cast<float>(n)));
  for (int i = 0; i < n; ++i) p[static_cast<size_t>(i) * n + i] += 1.0f;
  return p;
}

FlatTransform random_transform(int n1, int n2, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> s(static_cast<size_t>(n1) * n2);
  std::uniform_real_distribution<float> u(0.5f, 2.0f);
  for (float& x : s) x = u(rng);
  std::vector<float> p1 = factor(n1, rng);
  std::vector<float> p2 = factor(n2, rng);
  return FlatTransform(n1, n2, s, p1, p2);
}

TEST(FlatTransform, EqualsTheDenseKroneckerProduct) {
  for (auto [n1, n2] : {std::pair{3, 5}, std::pair{24, 24}, std::pair{4, 1}, std::pair{1, 7}}) {
    const FlatTransform t = random_transform(n1, n2, 11);
    const int n = n1 * n2;
    std::mt19937_64 rng(5);
    const std::vector<float> x = normal(2 * static_cast<size_t>(n), rng);
    std::vector<float> y(x.size());
    t.apply(x.data(), y.data(), 2);
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < n; ++c) {
        // (P1 ⊗ P2)[(i, j), (k, l)] = P1[i, k] P2[j, l]; y_c = sum_row x_row s_row P[row, c].
        double want = 0.0, mag = 0.0;
        for (int row = 0; row < n; ++row) {
          const double p = double{t.p1()[static_cast<size_t>(row / n2) * n1 + c / n2]} *
                           t.p2()[static_cast<size_t>(row % n2) * n2 + c % n2];
          const double term = double{x[static_cast<size_t>(r) * n + row]} * t.scale()[static_cast<size_t>(row)] * p;
          want += term;
          mag += std::fabs(term);
        }
        EXPECT_NEAR(y[static_cast<size_t>(r) * n + c], want, 1e-5 * mag + 1e-6) << n1 << "x" << n2 << " col " << c;
      }
  }
}

// The AVX2 kernel against its scalar twin (FMAs round once: within float bounds).
TEST(FlatTransform, Avx2KernelMatchesItsScalarTwin) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "needs AVX2 + FMA";
  for (auto [n1, n2] : {std::pair{24, 24}, std::pair{32, 48}, std::pair{64, 76}, std::pair{3, 5}}) {
    const FlatTransform t = random_transform(n1, n2, 13);
    const int n = n1 * n2;
    std::mt19937_64 rng(6);
    const std::vector<float> x = normal(3 * static_cast<size_t>(n), rng);
    std::vector<float> scalar(x.size()), simd(x.size());
    t.apply(x.data(), scalar.data(), 3, Isa::Scalar);
    t.apply(x.data(), simd.data(), 3, Isa::Avx2);
    double worst = 0.0, mag = 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      worst = std::max(worst, double{std::fabs(scalar[i] - simd[i])});
      mag = std::max(mag, double{std::fabs(scalar[i])});
    }
    EXPECT_LT(worst, 1e-5 * mag) << n1 << "x" << n2;
    EXPECT_GT(mag, 0.1);
  }
}

TEST(FlatTransform, TheWeightSideUndoesIt) {
  const FlatTransform t = random_transform(8, 12, 3);
  const FlatTransform w = t.for_weights();
  const int n = 96;
  std::mt19937_64 rng(9);
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> x = normal(n, rng), row = normal(n, rng);
    std::vector<float> xt(n), wt(n);
    t.apply(x.data(), xt.data());
    w.apply(row.data(), wt.data());
    double want = 0.0, got = 0.0, mag = 0.0;
    for (int i = 0; i < n; ++i) {
      want += double{x[i]} * row[i];
      got += double{xt[i]} * wt[i];
      mag += std::fabs(double{x[i]} * row[i]);
    }
    EXPECT_NEAR(got, want, 1e-4 * mag);
  }
}

TEST(FlatTransform, RefusesSingularFactorsAndBadShapes) {
  std::vector<float> s(6, 1.0f), p1 = {1, 2, 2, 4}, p2(9, 0.0f);
  for (int i = 0; i < 3; ++i) p2[i * 4] = 1.0f;
  const FlatTransform singular(2, 3, s, p1, p2);  // p1 has rank 1
  EXPECT_THROW(singular.for_weights(), Error);
  EXPECT_THROW(FlatTransform(2, 3, std::vector<float>(5, 1.0f), p1, p2), Error);
  std::vector<float> nan_p2 = p2;
  nan_p2[1] = std::nanf("");
  EXPECT_THROW(FlatTransform(2, 3, s, p1, nan_p2), Error);
  std::vector<float> zero_s = s;
  zero_s[2] = 0.0f;
  EXPECT_THROW(FlatTransform(2, 3, zero_s, {1, 0, 0, 1}, p2).for_weights(), Error);
}

// Q4_0 of the clipped row equals the trained fake quantization: codes
// round(x / d) clamped to -8..7 with d = ratio * m / -8, m the block's signed
// largest value.
TEST(FlatTransform, ClippingGivesQ4_0TheTrainedGrid) {
  std::mt19937_64 rng(21);
  const auto& q4 = kernels::quant_kernels(DType::Q4_0, Isa::Scalar);
  for (float ratio : {1.0f, 0.9f, 0.6f}) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> row = normal(64, rng);
      if (trial % 2) row[trial % 64] = -6.0f;  // a negative outlier: the grid's other orientation
      std::vector<float> clipped = row;
      clip_row_q4_0(clipped.data(), 64, ratio);
      std::vector<uint8_t> bytes(2 * 18);
      q4.quantize_weights(clipped.data(), bytes.data(), 64);
      std::vector<float> got(64);
      q4.dequantize_row(bytes.data(), got.data(), 64);
      for (int b = 0; b < 2; ++b) {
        float m = 0.0f;
        for (int j = 0; j < 32; ++j)
          if (std::fabs(row[b * 32 + j]) > std::fabs(m)) m = row[b * 32 + j];
        const float d = ratio * m / -8.0f;
        for (int j = 0; j < 32; ++j) {
          const float q = std::clamp(std::nearbyint(row[b * 32 + j] / d), -8.0f, 7.0f);
          // The file stores d in F16: allow its rounding.
          EXPECT_NEAR(got[b * 32 + j], q * d, std::fabs(d) * 8 * 1e-3 + 1e-6) << "ratio " << ratio;
        }
      }
    }
  }
}

// The activation clipping: each block of 32 clamped to +-ratio x its largest
// magnitude, so that act=a4's quantizer takes the scale ratio x amax / 7 the
// trainer's fake quantization used; refused outside (0, 1].
TEST(FlatTransform, ClipsEachActivationBlockForA4) {
  FlatTransform t = random_transform(8, 8, 4);
  EXPECT_THROW(t.set_act_clip(0.0f), Error);
  EXPECT_THROW(t.set_act_clip(1.5f), Error);
  t.set_act_clip(0.5f);
  std::mt19937_64 rng(8);
  std::vector<float> y = normal(128, rng);
  y[40] = 10.0f;
  const std::vector<float> before = y;
  t.clip_activations(y.data(), 2);
  const auto& q8 = kernels::quant_kernels(DType::Q8_0, Isa::Scalar);
  std::vector<uint8_t> bytes(4 * 34);
  q8.quantize_row_a4(y.data(), bytes.data(), 128);
  std::vector<float> got(128);
  q8.dequantize_row(bytes.data(), got.data(), 128);
  for (int b = 0; b < 4; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(before[b * 32 + j]));
    const float d = 0.5f * amax / 7.0f;
    for (int j = 0; j < 32; ++j) {
      const float v = before[b * 32 + j];
      EXPECT_LE(std::fabs(y[b * 32 + j]), 0.5f * amax * (1 + 1e-6f));
      const float q = std::clamp(std::nearbyint(v / d), -7.0f, 7.0f);
      EXPECT_NEAR(got[b * 32 + j], q * d, d * 7 * 2e-3 + 1e-6) << "block " << b << " value " << v;
    }
  }
}

}  // namespace
}  // namespace kestrel
