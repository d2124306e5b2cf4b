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
