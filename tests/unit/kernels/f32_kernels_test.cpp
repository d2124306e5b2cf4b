// Float primitives on every host ISA against the scalar twins, over lengths
// that leave every possible tail (0..70) and a long odd one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/f32_kernels.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kEps = 1.0 / (1 << 24);

std::vector<int64_t> lengths() {
  std::vector<int64_t> out;
  for (int64_t n = 0; n <= 70; ++n) out.push_back(n);
  for (int64_t n : {127, 128, 129, 1000, 4099}) out.push_back(n);
  return out;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(F32Kernels, DotWithinSummationBound) {
  const F32Kernels& ref = f32_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const F32Kernels& k = f32_kernels(isa);
    for (int64_t n : lengths()) {
      const auto a = make_row(Pattern::Mixed, n, 1), b = make_row(Pattern::Normal, n, 2);
      double mag = 0;
      for (int64_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(a[static_cast<size_t>(i)]) * b[static_cast<size_t>(i)]);
      const double want = ref.dot(n, a.data(), b.data()), got = k.dot(n, a.data(), b.data());
      // Lanes sum n/lanes terms, then a log-depth reduction; n*eps is generous.
      const double bound = (static_cast<double>(n) + 8) * kEps * mag;
      ASSERT_LE(std::fabs(got - want), bound) << isa << " n=" << n << ": " << got << " vs " << want;
    }
  }
}

TEST(F32Kernels, AxpyWithinOneRounding) {
  const F32Kernels& ref = f32_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const F32Kernels& k = f32_kernels(isa);
    for (int64_t n : lengths()) {
      const auto x = make_row(Pattern::Normal, n, 3), y0 = make_row(Pattern::Uniform, n, 4);
      auto want = y0, got = y0;
      // Guard elements after the end must stay untouched by masked/tail code.
      got.push_back(123.0f);
      ref.axpy(n, 0.37f, x.data(), want.data());
      k.axpy(n, 0.37f, x.data(), got.data());
      ASSERT_EQ(got.back(), 123.0f) << isa << " n=" << n << " wrote past the end";
      for (int64_t i = 0; i < n; ++i) {
        const size_t j = static_cast<size_t>(i);
        // FMA rounds once where mul+add rounds twice: at most one rounding of a*x apart.
        const double bound = 2 * kEps * (std::fabs(0.37 * x[j]) + std::fabs(y0[j]));
        ASSERT_LE(std::fabs(static_cast<double>(got[j]) - want[j]), bound) << isa << " n=" << n << " element " << i;
      }
    }
  }
}

TEST(F32Kernels, ScaleAndConversionsAreBitIdentical) {
  const F32Kernels& ref = f32_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const F32Kernels& k = f32_kernels(isa);
    for (int64_t n : lengths()) {
      for (Pattern p : {Pattern::Normal, Pattern::Huge, Pattern::Tiny, Pattern::Ties}) {
        const auto x = make_row(p, n, 5);
        auto want = x, got = x;
        got.push_back(-5.0f);
        ref.scale(n, -1.7f, want.data());
        k.scale(n, -1.7f, got.data());
        ASSERT_EQ(got.back(), -5.0f) << isa << " n=" << n;
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(got[static_cast<size_t>(i)]), bits(want[static_cast<size_t>(i)])) << isa << " scale n=" << n;

        std::vector<uint16_t> h_want(static_cast<size_t>(n)), h_got(static_cast<size_t>(n) + 1, 0xBEEF);
        ref.f32_to_f16(n, x.data(), h_want.data());
        k.f32_to_f16(n, x.data(), h_got.data());
        ASSERT_EQ(h_got.back(), 0xBEEF) << isa << " n=" << n;
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(h_got[static_cast<size_t>(i)], h_want[static_cast<size_t>(i)])
              << isa << " f32->f16 " << pattern_name(p) << " element " << i << " of " << x[static_cast<size_t>(i)];

        std::vector<float> f_want(static_cast<size_t>(n)), f_got(static_cast<size_t>(n) + 1, 9.0f);
        ref.f16_to_f32(n, h_want.data(), f_want.data());
        k.f16_to_f32(n, h_want.data(), f_got.data());
        ASSERT_EQ(f_got.back(), 9.0f) << isa << " n=" << n;
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(bits(f_got[static_cast<size_t>(i)]), bits(f_want[static_cast<size_t>(i)])) << isa << " f16->f32 element " << i;
      }
    }
  }
}

// Every fp16 bit pattern (NaNs aside) converts exactly, and back to itself.
TEST(F32Kernels, AllHalvesRoundTrip) {
  std::vector<uint16_t> all;
  for (uint32_t h = 0; h < 65536; ++h)
    if ((h & 0x7C00) != 0x7C00 || (h & 0x3FF) == 0) all.push_back(static_cast<uint16_t>(h));
  const int64_t n = static_cast<int64_t>(all.size());
  for (Isa isa : supported_isas()) {
    const F32Kernels& k = f32_kernels(isa);
    std::vector<float> f(all.size());
    std::vector<uint16_t> back(all.size());
    k.f16_to_f32(n, all.data(), f.data());
    k.f32_to_f16(n, f.data(), back.data());
    for (size_t i = 0; i < all.size(); ++i) {
      ASSERT_EQ(bits(f[i]), bits(fp16_to_f32(all[i]))) << isa << " half 0x" << std::hex << all[i];
      ASSERT_EQ(back[i], all[i]) << isa << " half 0x" << std::hex << all[i];
    }
  }
}

TEST(F32Kernels, ConveniencesUseTheBestTable) {
  const auto a = make_row(Pattern::Normal, 100, 8), b = make_row(Pattern::Normal, 100, 9);
  EXPECT_EQ(dot_f32(100, a.data(), b.data()), f32_kernels(best_isa()).dot(100, a.data(), b.data()));
  EXPECT_EQ(f32_kernels().isa, f32_kernels(best_isa()).isa);
}

TEST(F32Kernels, ExpApproxWithinFourTenthsOfAMillionthOfStdExp) {
  double worst = 0;
  for (int i = -870000; i <= 880000; ++i) {
    const float x = static_cast<float>(i) * 1e-4f;
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(exp_approx(x) - want) / want);
  }
  EXPECT_LT(worst, 4e-7);
  EXPECT_EQ(exp_approx(0.0f), 1.0f);
  EXPECT_EQ(exp_approx(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(exp_approx(-90.0f), 0.0f);
  EXPECT_TRUE(std::isfinite(exp_approx(1000.0f)));  // capped at e^88
}

TEST(F32Kernels, SimdLevelsProvideTheirOwnKernels) {
  // A table entry left at the twin would only show up as slowness.
  const F32Kernels& ref = f32_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const F32Kernels& k = f32_kernels(isa);
    EXPECT_NE(k.dot, ref.dot) << isa;
    EXPECT_NE(k.axpy, ref.axpy) << isa;
    EXPECT_NE(k.scale, ref.scale) << isa;
    EXPECT_NE(k.f16_to_f32, ref.f16_to_f32) << isa;
    EXPECT_NE(k.f32_to_f16, ref.f32_to_f16) << isa;
    EXPECT_NE(k.swiglu, ref.swiglu) << isa;
  }
}

TEST(F32Kernels, SwigluIdenticalBitsOnEveryIsaAndNearClosedForm) {
  const F32Kernels& ref = f32_kernels(Isa::Scalar);
  for (int64_t n : lengths()) {
    auto g = make_row(Pattern::Mixed, n, 5), u = make_row(Pattern::Normal, n, 6);
    for (size_t i = 0; i < g.size(); i += 7) g[i] *= 40.0f;  // deep into both saturations
    auto want = g;
    ref.swiglu(n, want.data(), u.data());
    for (int64_t i = 0; i < n; ++i) {
      const size_t j = static_cast<size_t>(i);
      const double s = g[j] / (1.0 + std::exp(-static_cast<double>(g[j]))) * u[j];
      ASSERT_NEAR(want[j], s, 1e-6 * (1.0 + std::fabs(s))) << "n=" << n << " g=" << g[j];
    }
    for (Isa isa : simd_isas()) {
      auto got = g;
      got.push_back(123.0f);
      f32_kernels(isa).swiglu(n, got.data(), u.data());
      ASSERT_EQ(got.back(), 123.0f) << isa << " n=" << n << " wrote past the end";
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(bits(got[static_cast<size_t>(i)]), bits(want[static_cast<size_t>(i)]))
            << isa << " n=" << n << " element " << i;
    }
  }
}

}  // namespace
}  // namespace kestrel::kernels::test
