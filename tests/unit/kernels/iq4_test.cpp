// IQ4_NL and IQ4_XS (kernels/ref/q_iq4.cpp): blocks built by hand against the
// table and the scale packing, the dot products against the double-precision
// dot of the dequantized rows, and the quantizers' error on Gaussian rows.
#include <gtest/gtest.h>

#include "kernels/blocks.h"
#include "kernels/panel_types.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kEps = 1.0 / (1 << 24);
const FormatPair kIq4[] = {{DType::IQ4_NL, DType::Q8_0}, {DType::IQ4_XS, DType::Q8_K}};

TEST(Iq4, TraitsAsGgml) {
  EXPECT_EQ(static_cast<uint32_t>(DType::IQ4_NL), 20u);
  EXPECT_EQ(static_cast<uint32_t>(DType::IQ4_XS), 23u);
  EXPECT_EQ(traits(DType::IQ4_NL).block_bytes, sizeof(BlockIQ4NL));
  EXPECT_EQ(traits(DType::IQ4_XS).block_bytes, sizeof(BlockIQ4XS));
  EXPECT_EQ(dtype_from_name("IQ4_XS"), DType::IQ4_XS);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(kIq4nlValues[i] + 128, kIq4nlUnsigned[i]);
}

TEST(Iq4, BlocksByHand) {
  BlockIQ4NL nl{};
  nl.d = f32_to_fp16(0.5f);
  for (int j = 0; j < 16; ++j) nl.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<float> y(32);
  quant_kernels(DType::IQ4_NL, Isa::Scalar).dequantize_row(&nl, y.data(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[static_cast<size_t>(j)], 0.5f * kIq4nlValues[j]);
    EXPECT_EQ(y[static_cast<size_t>(j + 16)], 0.5f * kIq4nlValues[15 - j]);
  }
  BlockIQ4XS xs{};
  xs.d = f32_to_fp16(0.25f);
  int ls[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = (13 * j + 7) % 64;
    xs.scales_l[j / 2] |= static_cast<uint8_t>((ls[j] & 0xF) << (4 * (j % 2)));
    xs.scales_h |= static_cast<uint16_t>((ls[j] >> 4) << (2 * j));
  }
  for (int k = 0; k < 128; ++k) xs.qs[k] = static_cast<uint8_t>((k % 16) | ((k * 7 % 16) << 4));
  y.resize(256);
  quant_kernels(DType::IQ4_XS, Isa::Scalar).dequantize_row(&xs, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32, l = e % 32, byte = 16 * j + l % 16;
    const int idx = l < 16 ? byte % 16 : byte * 7 % 16;
    ASSERT_EQ(y[static_cast<size_t>(e)], 0.25f * static_cast<float>(ls[j] - 32) * kIq4nlValues[idx]) << e;
  }
}

TEST(Iq4, DotMatchesDoubleDotOfDequantized) {
  for (const FormatPair& fp : kIq4) {
    for (Isa isa : supported_isas()) {
      const auto& k = quant_kernels(fp.weight, isa);
      for (int64_t n : row_lengths(fp.weight)) {
        for (uint32_t seed = 0; seed < 4; ++seed) {
          const Pattern p = seed % 2 ? Pattern::Outlier : Pattern::Normal;
          const std::vector<uint8_t> w =
              seed < 2 ? random_blocks(fp.weight, n, 80 + seed) : quantize(fp.weight, make_row(p, n, seed), Isa::Scalar);
          const std::vector<uint8_t> a = quantize(fp.act, make_row(p, n, 4000 + seed), Isa::Scalar);
          const std::vector<float> wd = dequantize(fp.weight, w, n, Isa::Scalar);
          const std::vector<float> ad = dequantize(fp.act, a, n, Isa::Scalar);
          double want = 0, mag = 0;
          for (size_t i = 0; i < wd.size(); ++i) {
            want += static_cast<double>(wd[i]) * ad[i];
            mag += std::fabs(static_cast<double>(wd[i]) * ad[i]);
          }
          const double got = k.vec_dot(n, w.data(), a.data());
          const double bound = (static_cast<double>(n) / 32 + 6) * kEps * mag + 1e-30;
          ASSERT_LE(std::fabs(got - want), bound)
              << label(fp.weight, isa) << " n=" << n << " seed " << seed << ": " << got << " vs " << want;
        }
      }
    }
  }
}

// Measured: IQ4_NL ~0.09-0.10, IQ4_XS about the same (Q4_0 ~0.11, Q4_K ~0.085).
TEST(Iq4, GaussianRelativeRmseAndZeros) {
  const int64_t n = 256 * 64;
  const std::vector<float> x = make_row(Pattern::Normal, n, 99);
  for (const FormatPair& fp : kIq4) {
    const std::vector<float> y = dequantize(fp.weight, quantize(fp.weight, x, Isa::Scalar), n, Isa::Scalar);
    double se = 0, ss = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      se += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
      ss += static_cast<double>(x[i]) * x[i];
    }
    const double rel = std::sqrt(se / ss);
    EXPECT_LT(rel, 0.12) << dtype_name(fp.weight);
    RecordProperty(std::string("rmse_") + std::string(dtype_name(fp.weight)), std::to_string(rel));
    const std::vector<float> zero(512, 0.0f);
    for (float v : dequantize(fp.weight, quantize(fp.weight, zero, Isa::Scalar), 512, Isa::Scalar)) ASSERT_EQ(v, 0.0f);
  }
}

}  // namespace
}  // namespace kestrel::kernels::test
