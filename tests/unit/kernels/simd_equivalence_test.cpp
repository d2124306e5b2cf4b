// Every SIMD level the host runs against the scalar twin:
//  - dequantize: bit-identical (same conversions, same multiply/add, no FMA);
//  - activation quantizers: byte-identical, so results do not depend on the machine;
//  - vec_dot: within a bound from the float summation error, n * eps * sum|w a|.
// Over every format with a dot product (dot_formats()); formats without a
// weight quantizer (Q2_K, Q3_K) take random blocks in place of quantized rows.
#include <gtest/gtest.h>

#include "kernels/blocks.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kEps = 1.0 / (1 << 24);  // float unit roundoff

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(SimdEquivalence, DequantizeIsBitIdentical) {
  for (const FormatPair& fp : dot_formats()) {
    for (Isa isa : simd_isas()) {
      for (int64_t n : row_lengths(fp.weight)) {
        for (uint32_t seed : {1u, 2u, 3u}) {
          const std::vector<uint8_t> q = seed == 3 && has_quantizer(fp.weight)
                                             ? quantize(fp.weight, make_row(Pattern::Mixed, n, seed), Isa::Scalar)
                                             : random_blocks(fp.weight, n, seed);
          const std::vector<float> want = dequantize(fp.weight, q, n, Isa::Scalar);
          const std::vector<float> got = dequantize(fp.weight, q, n, isa);
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(bits(got[static_cast<size_t>(i)]), bits(want[static_cast<size_t>(i)]))
                << label(fp.weight, isa) << " n=" << n << " element " << i << ": " << got[static_cast<size_t>(i)]
                << " vs scalar " << want[static_cast<size_t>(i)];
          }
        }
      }
    }
  }
}

TEST(SimdEquivalence, ActivationQuantizersAreByteIdentical) {
  for (DType t : activation_formats()) {
    const int64_t bs = traits(t).block_size == 1 ? 1 : traits(t).block_size;
    for (Isa isa : simd_isas()) {
      for (Pattern p : all_patterns()) {
        for (int64_t blocks : {1, 3, 9, 16, 33}) {
          const int64_t n = blocks * (bs == 1 ? 37 : bs);  // odd lengths for the plain types
          const std::vector<float> x = make_row(p, n, 500u + static_cast<uint32_t>(blocks));
          const std::vector<uint8_t> want = quantize(t, x, Isa::Scalar);
          const std::vector<uint8_t> got = quantize(t, x, isa);
          ASSERT_EQ(got.size(), want.size());
          const size_t bb = traits(t).block_bytes;
          for (size_t off = 0; off < want.size(); off += bb) {
            ASSERT_EQ(0, std::memcmp(&got[off], &want[off], bb))
                << label(t, isa) << " pattern " << pattern_name(p) << " n=" << n << ": block " << off / bb
                << " differs from the scalar quantizer";
          }
        }
      }
    }
  }
}

// One weight row against one activation row per case; the worst case (largest
// error relative to its bound) is reported.
TEST(SimdEquivalence, VecDotMatchesScalarTwin) {
  for (const FormatPair& fp : dot_formats()) {
    for (Isa isa : simd_isas()) {
      const auto& simd = quant_kernels(fp.weight, isa);
      const auto& ref = quant_kernels(fp.weight, Isa::Scalar);
      for (int64_t n : row_lengths(fp.weight)) {
        for (uint32_t seed = 0; seed < 6; ++seed) {
          const Pattern p = seed % 3 == 0 ? Pattern::Normal : seed % 3 == 1 ? Pattern::Mixed : Pattern::Outlier;
          const std::vector<uint8_t> w =
              seed < 3 || !has_quantizer(fp.weight) ? random_blocks(fp.weight, n, seed)
                                                    : quantize(fp.weight, make_row(p, n, seed), Isa::Scalar);
          const std::vector<uint8_t> a = quantize(fp.act, make_row(p, n, 1000 + seed), Isa::Scalar);
          // Magnitude of the sum: dequantized |w| (plus its offset part) times |a|.
          const std::vector<float> wd = dequantize(fp.weight, w, n, Isa::Scalar);
          const std::vector<float> ad = dequantize(fp.act, a, n, Isa::Scalar);
          const std::vector<float> off = offset_parts(fp.weight, w, n);
          double mag = 0;
          for (int64_t i = 0; i < n; ++i)
            mag += (std::fabs(wd[static_cast<size_t>(i)]) + std::fabs(off[static_cast<size_t>(i)])) *
                   std::fabs(ad[static_cast<size_t>(i)]);
          const double want = ref.vec_dot(n, w.data(), a.data());
          const double got = simd.vec_dot(n, w.data(), a.data());
          // Each side sums at most n/32 + a few float terms of size <= mag.
          const double bound = 2.0 * (static_cast<double>(n) / 32 + 8) * kEps * mag + 1e-30;
          ASSERT_LE(std::fabs(got - want), bound)
              << label(fp.weight, isa) << " n=" << n << " seed " << seed << ": simd " << got << " scalar " << want
              << " (|diff| " << std::fabs(got - want) << ", bound " << bound << ")";
        }
      }
    }
  }
}

// Blocks whose quant and scale bytes are all one value (all bits clear, all
// set, alternating) against activations of +-127 everywhere: the largest
// integer products each format can form, where a saturating int16 pair sum in
// a SIMD path (maddubs) would show as an error far above the bound.
TEST(SimdEquivalence, VecDotAtTheQuantExtremes) {
  for (const FormatPair& fp : dot_formats()) {
    if (traits(fp.weight).block_size == 1) continue;
    for (Isa isa : simd_isas()) {
      const auto& simd = quant_kernels(fp.weight, isa);
      const auto& ref = quant_kernels(fp.weight, Isa::Scalar);
      const int64_t n = 4 * traits(fp.weight).block_size;
      for (uint8_t fill : {0x00, 0xFF, 0x55, 0xAA, 0x0F, 0xF0}) {
        std::vector<uint8_t> w(row_bytes(fp.weight, n), fill);
        const size_t bb = traits(fp.weight).block_bytes;
        for (size_t off = 0; off < w.size(); off += bb)
          for (int f : half_fields(fp.weight)) {
            const uint16_t h = f32_to_fp16(off / bb % 2 ? -1.5f : 1.0f);
            std::memcpy(&w[off + static_cast<size_t>(f)], &h, 2);
          }
        for (float sign : {1.0f, -1.0f}) {
          std::vector<float> x = make_row(Pattern::Constant, n, 0);
          for (size_t i = 0; i < x.size(); ++i) x[i] *= (i % 3 == 0 ? -sign : sign);
          const std::vector<uint8_t> a = quantize(fp.act, x, Isa::Scalar);
          const std::vector<float> wd = dequantize(fp.weight, w, n, Isa::Scalar);
          const std::vector<float> ad = dequantize(fp.act, a, n, Isa::Scalar);
          const std::vector<float> off = offset_parts(fp.weight, w, n);
          double mag = 0;
          for (size_t i = 0; i < wd.size(); ++i) mag += (std::fabs(wd[i]) + std::fabs(off[i])) * std::fabs(ad[i]);
          const double want = ref.vec_dot(n, w.data(), a.data());
          const double got = simd.vec_dot(n, w.data(), a.data());
          const double bound = 2.0 * (static_cast<double>(n) / 32 + 8) * kEps * mag + 1e-30;
          ASSERT_LE(std::fabs(got - want), bound) << label(fp.weight, isa) << " fill 0x" << std::hex << int{fill}
                                                  << std::dec << " sign " << sign << ": simd " << got << " scalar "
                                                  << want << " (bound " << bound << ")";
        }
      }
    }
  }
}

// A row-batched dot product (QuantKernels::gemv, where a level has one) gives
// every row the bits of that level's vec_dot: rows of random blocks, of
// quantized rows and of extreme bytes (all fifth bits clear or set: the
// unsigned quants' largest products), against random and +-127 activations,
// with a row stride wider than a row.
TEST(SimdEquivalence, GemvGivesEveryRowTheBitsOfVecDot) {
  int checked = 0;
  for (const FormatPair& fp : dot_formats()) {
    for (Isa isa : simd_isas()) {
      const auto& k = quant_kernels(fp.weight, isa);
      if (k.gemv == nullptr) continue;
      for (int64_t n : row_lengths(fp.weight)) {
        constexpr int64_t kRows = 19;
        const size_t rb = row_bytes(fp.weight, n), stride = rb + 64;
        std::vector<uint8_t> w(stride * kRows, 0xCD);
        for (int64_t r = 0; r < kRows; ++r) {
          const auto seed = static_cast<uint32_t>(r);
          std::vector<uint8_t> row = r % 3 == 0 && has_quantizer(fp.weight)
                                         ? quantize(fp.weight, make_row(Pattern::Outlier, n, seed), Isa::Scalar)
                                         : random_blocks(fp.weight, n, seed);
          if (r == 1 || r == 2)
            for (size_t off = 0; off < row.size(); off += traits(fp.weight).block_bytes)
              for (size_t b = 2; b < traits(fp.weight).block_bytes; ++b) row[off + b] = r == 1 ? 0xFF : 0x00;
          std::copy(row.begin(), row.end(), w.begin() + static_cast<ptrdiff_t>(stride * r));
        }
        for (uint32_t seed : {7u, 8u}) {
          std::vector<float> x = make_row(seed == 7 ? Pattern::Mixed : Pattern::Constant, n, seed);
          if (seed == 8)
            for (size_t i = 0; i < x.size(); ++i) x[i] *= i % 3 == 0 ? -1.0f : 1.0f;
          const std::vector<uint8_t> a = quantize(fp.act, x, Isa::Scalar);
          std::vector<float> y(kRows);
          k.gemv(n, w.data(), stride, kRows, a.data(), y.data());
          for (int64_t r = 0; r < kRows; ++r) {
            const float want = k.vec_dot(n, w.data() + stride * r, a.data());
            ASSERT_EQ(bits(y[static_cast<size_t>(r)]), bits(want))
                << label(fp.weight, isa) << " n=" << n << " row " << r << ": " << y[static_cast<size_t>(r)] << " vs "
                << want;
          }
          ++checked;
        }
      }
    }
  }
  if (checked == 0) GTEST_SKIP() << "no level this CPU runs has a row-batched dot product";
}

// The rows x tokens kernel of the float formats (QuantKernels::float_gemm, where
// a level has one) gives every (row, token) the bits of that level's vec_dot,
// for row counts that leave partial row tiles, token counts that leave partial
// token tiles, rows with a tail past the last 8 elements and rows as long as
// Qwen2.5-1.5B's down projection; and it writes nothing but
// y[t * y_stride + r], r < rows.
TEST(SimdEquivalence, FloatGemmGivesEveryElementTheBitsOfVecDot) {
  int checked = 0;
  for (DType type : {DType::F16, DType::BF16}) {
    for (Isa isa : simd_isas()) {
      const auto& k = quant_kernels(type, isa);
      if (k.float_gemm == nullptr) continue;
      for (int64_t n : {int64_t{37}, int64_t{64}, int64_t{576}, int64_t{8960}}) {
        for (int64_t rows : {int64_t{1}, int64_t{7}}) {
          const size_t rb = row_bytes(type, n), stride = rb + 64;
          std::vector<uint8_t> w(stride * static_cast<size_t>(rows), 0xCD);
          for (int64_t r = 0; r < rows; ++r) {
            const std::vector<uint8_t> row = quantize(type, make_row(Pattern::Mixed, n, static_cast<uint32_t>(r)), isa);
            std::copy(row.begin(), row.end(), w.begin() + static_cast<ptrdiff_t>(stride * static_cast<size_t>(r)));
          }
          for (int64_t tokens : {int64_t{1}, int64_t{2}, int64_t{5}, int64_t{9}}) {
            // Activation rows as vec_dot takes them, and widened back for float_gemm.
            std::vector<std::vector<uint8_t>> a;
            std::vector<float> act(static_cast<size_t>(n * tokens));
            for (int64_t t = 0; t < tokens; ++t) {
              a.push_back(quantize(type, make_row(Pattern::Mixed, n, static_cast<uint32_t>(100 + t)), isa));
              k.dequantize_row(a.back().data(), act.data() + t * n, n);
            }
            const int64_t y_stride = rows + 3;
            constexpr float kGuard = -7.25f;
            std::vector<float> y(static_cast<size_t>(y_stride * tokens), kGuard);
            k.float_gemm(n, w.data(), stride, rows, act.data(), tokens, y.data(), y_stride);
            for (int64_t t = 0; t < tokens; ++t)
              for (int64_t r = 0; r < y_stride; ++r) {
                const float got = y[static_cast<size_t>(t * y_stride + r)];
                if (r >= rows) {
                  ASSERT_EQ(bits(got), bits(kGuard)) << label(type, isa) << " wrote past row " << rows;
                  continue;
                }
                const float want =
                    k.vec_dot(n, w.data() + stride * static_cast<size_t>(r), a[static_cast<size_t>(t)].data());
                ASSERT_EQ(bits(got), bits(want))
                    << label(type, isa) << " n=" << n << " rows " << rows << " tokens " << tokens << " row " << r
                    << " token " << t << ": " << got << " vs " << want;
              }
            ++checked;
          }
        }
      }
    }
  }
  if (checked == 0) GTEST_SKIP() << "no level this CPU runs has a float rows x tokens kernel";
}

}  // namespace
}  // namespace kestrel::kernels::test
