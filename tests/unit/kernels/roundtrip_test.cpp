// quantize -> dequantize round trips of every weight format on every host ISA.
// Bounds come from the format: with the scales actually stored in the block,
// each value must decode to the nearest representable level (half a step
// away at most), or to the edge level when it lies outside the block's range.
// Rows: random, constant, all-zero, huge, tiny (subnormal fp16 scales), a
// single outlier, exact rounding ties, and mixed magnitudes per block.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "kernels/blocks.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kF16Eps = 1.0 / 2048;  // half an fp16 ulp, relative
constexpr double kTinyAbs = 1e-12;      // float noise on values near zero

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// Allowed |x - x_hat| for element i of a row, from the stored block.
// lo/hi: the representable range of the element's group; step: its level gap.
double allowed_error(DType t, const std::vector<uint8_t>& q, const std::vector<float>& x, int64_t i) {
  const double xi = x[static_cast<size_t>(i)];
  auto outside = [&](double lo, double hi) { return xi < lo ? lo - xi : (xi > hi ? xi - hi : 0.0); };
  const size_t bb = traits(t).block_bytes;
  switch (t) {
    case DType::F32:
      return 0.0;
    case DType::F16:
      return std::max(std::fabs(xi) * kF16Eps, std::ldexp(1.0, -25));
    case DType::BF16:
      return std::fabs(xi) / 256.0;
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0: {
      const int levels = t == DType::Q4_0 ? 8 : t == DType::Q5_0 ? 16 : 127;
      const double d = std::fabs(half_at(&q[static_cast<size_t>(i / 32) * bb]));
      // The block extreme maps to -levels exactly, the other side may reach only
      // levels-1 (a clamp of up to one step): grant a full step there.
      const double steps = t == DType::Q8_0 ? 0.5 : 1.0;
      return steps * d + levels * std::max(d * kF16Eps, std::ldexp(1.0, -25)) + kTinyAbs;
    }
    case DType::Q4_1:
    case DType::Q5_1: {
      const double levels = t == DType::Q4_1 ? 15 : 31;
      const uint8_t* b = &q[static_cast<size_t>(i / 32) * bb];
      const double d = half_at(b), m = half_at(b + 2);
      // Stored d and m are fp16: relative rounding, or absolute 2^-25 once subnormal.
      const double half_ulp = std::ldexp(1.0, -25);
      return 0.5 * d + levels * std::max(d * kF16Eps, half_ulp) + std::max(std::fabs(m) * kF16Eps, half_ulp) +
             kTinyAbs;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const int nmax = t == DType::Q4_K ? 15 : 31;
      const uint8_t* b = &q[static_cast<size_t>(i / 256) * bb];
      uint8_t sc, mn;
      k_scale_min(static_cast<int>(i % 256 / 32), b + 4, &sc, &mn);
      const double d = static_cast<double>(half_at(b)) * sc, m = static_cast<double>(half_at(b + 2)) * mn;
      return outside(-m, nmax * d - m) + 0.5 * d + (nmax * d + m) * 1e-6 + kTinyAbs;
    }
    case DType::Q6_K: {
      const uint8_t* b = &q[static_cast<size_t>(i / 256) * bb];
      const double d = static_cast<double>(half_at(b + 208)) * static_cast<int8_t>(b[192 + i % 256 / 16]);
      const double lo = std::min(-32 * d, 31 * d), hi = std::max(-32 * d, 31 * d);
      return outside(lo, hi) + 0.5 * std::fabs(d) + 32 * std::fabs(d) * 1e-6 + kTinyAbs;
    }
    default:
      return 0.0;
  }
}

TEST(QuantRoundTrip, EveryFormatPatternAndIsa) {
  for (const FormatPair& fp : weight_formats()) {
    for (Isa isa : supported_isas()) {
      for (Pattern p : all_patterns()) {
        for (int64_t n : {traits(fp.weight).block_size == 256 ? int64_t{256} : int64_t{32}, int64_t{1024}, int64_t{2560}}) {
          const std::vector<float> x = make_row(p, n, 1234u + static_cast<uint32_t>(n));
          const std::vector<uint8_t> q = quantize(fp.weight, x, isa);
          const std::vector<float> y = dequantize(fp.weight, q, n, isa);
          int64_t worst = -1;
          double worst_excess = 0.0;
          for (int64_t i = 0; i < n; ++i) {
            const double err = std::fabs(static_cast<double>(x[static_cast<size_t>(i)]) - y[static_cast<size_t>(i)]);
            const double excess = err - allowed_error(fp.weight, q, x, i);
            if (!(excess <= worst_excess)) {  // also catches NaN
              worst_excess = excess;
              worst = i;
            }
          }
          if (worst >= 0) {
            ADD_FAILURE() << label(fp.weight, isa) << " pattern " << pattern_name(p) << " n=" << n << ": element "
                          << worst << " x=" << x[static_cast<size_t>(worst)] << " decoded "
                          << y[static_cast<size_t>(worst)] << " exceeds its bound by " << worst_excess;
          }
        }
      }
    }
  }
}

// Zero rows must decode to exact zeros, constant rows nearly exactly.
TEST(QuantRoundTrip, ZeroRowsDecodeToZero) {
  for (const FormatPair& fp : weight_formats()) {
    const std::vector<float> x = make_row(Pattern::Zero, 512, 1);
    for (Isa isa : supported_isas()) {
      const std::vector<float> y = dequantize(fp.weight, quantize(fp.weight, x, isa), 512, isa);
      for (float v : y) ASSERT_EQ(v, 0.0f) << label(fp.weight, isa);
    }
  }
}

// Statistical quality on Gaussian rows: relative RMS error against what the
// bit width allows (measured values sit well below these: Q4_0 ~0.11, Q4_1
// ~0.09, Q5 ~0.05, Q8_0 ~0.004, Q4_K ~0.085, Q5_K ~0.043, Q6_K ~0.021).
TEST(QuantRoundTrip, GaussianRelativeRmse) {
  const std::pair<DType, double> limits[] = {
      {DType::Q4_0, 0.14},  {DType::Q4_1, 0.12}, {DType::Q5_0, 0.07}, {DType::Q5_1, 0.06},
      {DType::Q8_0, 0.006}, {DType::Q4_K, 0.11}, {DType::Q5_K, 0.06}, {DType::Q6_K, 0.03},
      {DType::F16, 4e-4},   {DType::BF16, 3e-3},
  };
  const int64_t n = 256 * 64;
  const std::vector<float> x = make_row(Pattern::Normal, n, 99);
  for (const auto& [t, limit] : limits) {
    const std::vector<float> y = dequantize(t, quantize(t, x, Isa::Scalar), n, Isa::Scalar);
    double se = 0, ss = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = static_cast<double>(x[static_cast<size_t>(i)]) - y[static_cast<size_t>(i)];
      se += e * e;
      ss += static_cast<double>(x[static_cast<size_t>(i)]) * x[static_cast<size_t>(i)];
    }
    const double rel = std::sqrt(se / ss);
    EXPECT_LT(rel, limit) << dtype_name(t);
    RecordProperty(std::string("rmse_") + std::string(dtype_name(t)), std::to_string(rel));
  }
}

// Activation formats: q = round(x / d) with d = amax/127 (Q8_0, Q8_1) or
// -max/127 (Q8_K), so every value is within half a step; the side fields
// (s of Q8_1, bsums of Q8_K) must equal what they summarize.
TEST(ActivationQuant, RoundTripAndSideFields) {
  for (Isa isa : supported_isas()) {
    for (Pattern p : all_patterns()) {
      const int64_t n = 1024;
      const std::vector<float> x = make_row(p, n, 77);
      {
        const auto q = quantize(DType::Q8_1, x, isa);
        const auto* b = reinterpret_cast<const BlockQ8_1*>(q.data());
        for (int64_t blk = 0; blk < n / 32; ++blk) {
          float amax = 0;
          int sum = 0;
          for (int j = 0; j < 32; ++j) {
            amax = std::max(amax, std::fabs(x[static_cast<size_t>(blk * 32 + j)]));
            sum += b[blk].qs[j];
          }
          ASSERT_EQ(b[blk].s, f32_to_fp16(amax / 127.0f * static_cast<float>(sum))) << isa << " block " << blk;
          const double d = fp16_to_f32(b[blk].d);
          for (int j = 0; j < 32; ++j) {
            const double err = std::fabs(x[static_cast<size_t>(blk * 32 + j)] - b[blk].qs[j] * d);
            ASSERT_LE(err, 0.5 * d + 127 * std::max(d * kF16Eps, std::ldexp(1.0, -25)) + kTinyAbs)
                << isa << " " << pattern_name(p) << " element " << blk * 32 + j;
          }
        }
      }
      {
        const auto q = quantize(DType::Q8_K, x, isa);
        const auto* b = reinterpret_cast<const BlockQ8K*>(q.data());
        for (int64_t blk = 0; blk < n / 256; ++blk) {
          for (int g = 0; g < 16; ++g) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += b[blk].qs[16 * g + j];
            ASSERT_EQ(b[blk].bsums[g], sum) << isa << " block " << blk << " group " << g;
          }
          const double d = std::fabs(b[blk].d);
          for (int j = 0; j < 256; ++j) {
            const double err = std::fabs(x[static_cast<size_t>(blk * 256 + j)] - b[blk].qs[j] * static_cast<double>(b[blk].d));
            ASSERT_LE(err, 0.5 * d * (1 + 1e-6) + kTinyAbs) << isa << " " << pattern_name(p) << " element " << blk * 256 + j;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kestrel::kernels::test
