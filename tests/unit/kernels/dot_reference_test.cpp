// The scalar twins' dot products against an independent reference: the double
// precision sum of dequantized weight times dequantized activation. Q4_1/Q5_1
// take their offset term from the activation's stored s = fp16(d * sum q),
// which differs from d16 * sum q by the fp16 rounding of s; the reference adds
// that known difference, so the bound stays the float summation error.
#include <gtest/gtest.h>

#include "kernels/blocks.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kEps = 1.0 / (1 << 24);

double reference_dot(const FormatPair& fp, const std::vector<uint8_t>& w, const std::vector<uint8_t>& a, int64_t n,
                     double* magnitude) {
  const std::vector<float> wd = dequantize(fp.weight, w, n, Isa::Scalar);
  const std::vector<float> ad = dequantize(fp.act, a, n, Isa::Scalar);
  const std::vector<float> off = offset_parts(fp.weight, w, n);
  double sum = 0, mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    sum += static_cast<double>(wd[k]) * ad[k];
    mag += (std::fabs(wd[k]) + std::fabs(off[k])) * std::fabs(ad[k]);
  }
  if (fp.act == DType::Q8_1) {
    const auto* y = reinterpret_cast<const BlockQ8_1*>(a.data());
    for (int64_t b = 0; b < n / 32; ++b) {
      int qsum = 0;
      for (int j = 0; j < 32; ++j) qsum += y[b].qs[j];
      const double m = off[static_cast<size_t>(b * 32)];
      sum += m * (static_cast<double>(fp16_to_f32(y[b].s)) - static_cast<double>(fp16_to_f32(y[b].d)) * qsum);
      mag += std::fabs(m * fp16_to_f32(y[b].s));
    }
  }
  *magnitude = mag;
  return sum;
}

TEST(DotReference, ScalarTwinMatchesDoubleDotOfDequantized) {
  for (const FormatPair& fp : weight_formats()) {
    const auto& ref = quant_kernels(fp.weight, Isa::Scalar);
    for (int64_t n : row_lengths(fp.weight)) {
      for (uint32_t seed = 0; seed < 6; ++seed) {
        const Pattern p = seed % 3 == 0 ? Pattern::Normal : seed % 3 == 1 ? Pattern::Huge : Pattern::Outlier;
        const std::vector<uint8_t> w =
            seed < 2 ? random_blocks(fp.weight, n, 40 + seed) : quantize(fp.weight, make_row(p, n, seed), Isa::Scalar);
        const std::vector<uint8_t> a = quantize(fp.act, make_row(p, n, 2000 + seed), Isa::Scalar);
        double mag = 0;
        const double want = reference_dot(fp, w, a, n, &mag);
        const double got = ref.vec_dot(n, w.data(), a.data());
        // Per block a few roundings (scale products, int->float), then one float
        // add per block into the running sum.
        const double bound = (static_cast<double>(n) / 32 + 6) * kEps * mag + 1e-30;
        ASSERT_LE(std::fabs(got - want), bound)
            << dtype_name(fp.weight) << " n=" << n << " seed " << seed << ": scalar " << got << " reference " << want
            << " (|diff| " << std::fabs(got - want) << ", bound " << bound << ")";
      }
    }
  }
}

// The read-only formats (no quantizer): random blocks only, every quant and
// scale bit pattern, against the same double reference.
TEST(DotReference, ReadOnlyFormatsMatchDoubleDot) {
  for (DType type : {DType::Q2_K, DType::Q3_K}) {
    const FormatPair fp{type, DType::Q8_K};
    for (Isa isa : supported_isas()) {
      const auto& k = quant_kernels(type, isa);
      for (int64_t n : row_lengths(type)) {
        for (uint32_t seed = 0; seed < 4; ++seed) {
          const std::vector<uint8_t> w = random_blocks(type, n, 70 + seed);
          const Pattern p = seed % 2 ? Pattern::Outlier : Pattern::Normal;
          const std::vector<uint8_t> a = quantize(DType::Q8_K, make_row(p, n, 3000 + seed), Isa::Scalar);
          double mag = 0;
          const double want = reference_dot(fp, w, a, n, &mag);
          const double got = k.vec_dot(n, w.data(), a.data());
          const double bound = (static_cast<double>(n) / 32 + 6) * kEps * mag + 1e-30;
          ASSERT_LE(std::fabs(got - want), bound) << label(type, isa) << " n=" << n << " seed " << seed << ": " << got
                                                  << " vs reference " << want << " (bound " << bound << ")";
        }
      }
    }
  }
}

// Q2_K and Q3_K blocks built field by field (as ggml's quantizers pack them),
// so the bit positions of quants, masks and 6-bit scales are checked against
// values worked out by hand, not against the same unpacking code.
TEST(DotReference, LowBitBlocksByHand) {
  {
    BlockQ2K b{};
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>((j % 4 + 1) | ((j % 3) << 4));
    // Element 128h + 32k + l holds k + h (mod 4): byte 32h + l, bits 2k.
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l)
        for (int k = 0; k < 4; ++k) b.qs[32 * h + l] |= static_cast<uint8_t>(((k + h) % 4) << (2 * k));
    b.d = f32_to_fp16(0.5f);
    b.dmin = f32_to_fp16(0.25f);
    std::vector<float> y(256);
    quant_kernels(DType::Q2_K, Isa::Scalar).dequantize_row(&b, y.data(), 256);
    for (int e = 0; e < 256; ++e) {
      const int j = e / 16, q = (e % 128 / 32 + e / 128) % 4;
      ASSERT_EQ(y[static_cast<size_t>(e)], 0.5f * static_cast<float>(j % 4 + 1) * q - 0.25f * static_cast<float>(j % 3))
          << "q2_K element " << e;
    }
  }
  {
    BlockQ3K b{};
    int want_sc[16];
    for (int j = 0; j < 16; ++j) {
      const int l = (7 * j + 5) % 64;  // 6-bit scale, 32 is zero
      want_sc[j] = l - 32;
      if (j < 8)
        b.scales[j] = static_cast<uint8_t>(l & 0xF);
      else
        b.scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
      b.scales[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
    }
    // Element 128h + 32k + l: low bits l % 4, high bit set when l is even.
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l)
        for (int k = 0; k < 4; ++k) {
          b.qs[32 * h + l] |= static_cast<uint8_t>((l % 4) << (2 * k));
          if (l % 2 == 0) b.hmask[l] |= static_cast<uint8_t>(1 << (4 * h + k));
        }
    b.d = f32_to_fp16(0.125f);
    std::vector<float> y(256);
    quant_kernels(DType::Q3_K, Isa::Scalar).dequantize_row(&b, y.data(), 256);
    for (int e = 0; e < 256; ++e) {
      const int l = e % 32, q = l % 4 - (l % 2 == 0 ? 0 : 4);
      ASSERT_EQ(y[static_cast<size_t>(e)], 0.125f * static_cast<float>(want_sc[e / 16]) * static_cast<float>(q))
          << "q3_K element " << e;
    }
  }
}

// A hand-computed case per family, so a wrong sign or offset in both the twin
// and the dequantizer cannot cancel out: a block of ones against a block of
// ones must give the block length.
TEST(DotReference, OnesTimesOnes) {
  for (const FormatPair& fp : weight_formats()) {
    const int64_t n = traits(fp.weight).block_size == 256 ? 512 : 64;
    const std::vector<float> ones(static_cast<size_t>(n), 1.0f);
    const auto w = quantize(fp.weight, ones, Isa::Scalar);
    const auto a = quantize(fp.act, ones, Isa::Scalar);
    for (Isa isa : supported_isas()) {
      const double got = quant_kernels(fp.weight, isa).vec_dot(n, w.data(), a.data());
      EXPECT_NEAR(got, static_cast<double>(n), 1e-3 * n) << label(fp.weight, isa);
    }
  }
}

}  // namespace
}  // namespace kestrel::kernels::test
