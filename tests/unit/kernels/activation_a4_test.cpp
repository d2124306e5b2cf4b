// act=a4: 4-bit activation codes in the 8-bit activation formats, checked in
// closed form (codes in [-7, 7], the block's largest value at ±7, every value
// within half a step), and through every weight format's dot product on every
// Isa against the sum of the dequantized products.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/blocks.h"
#include "kernels/quant_kernels.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

TEST(ActivationA4, CodesAreFourBitAndWithinHalfAStep) {
  const int64_t n = 512;
  for (DType act : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
    const auto& k = quant_kernels(act, Isa::Scalar);
    ASSERT_NE(k.quantize_row_a4, nullptr) << dtype_name(act);
    const int64_t block = traits(act).block_size;
    for (Pattern p : all_patterns()) {
      const std::vector<float> x = make_row(p, n, 3);
      std::vector<uint8_t> q(row_bytes(act, n));
      k.quantize_row_a4(x.data(), q.data(), n);
      const std::vector<float> back = dequantize(act, q, n, Isa::Scalar);
      for (int64_t b = 0; b < n / block; ++b) {
        float amax = 0.0f;
        for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b * block + j]));
        const float step = amax / 7.0f;
        for (int64_t j = 0; j < block; ++j) {
          const int64_t i = b * block + j;
          // F16 scales (Q8_0, Q8_1) round d: their relative error, and their
          // subnormal spacing (2^-24) for tiny blocks, times the largest code.
          const float f16_slack = act == DType::Q8_K ? 0.0f : 7.0f * (step * 1e-3f + 6e-8f);
          EXPECT_LE(std::fabs(back[i] - x[i]), 0.5f * step + f16_slack + 1e-30f)
              << dtype_name(act) << " " << pattern_name(p) << " at " << i;
        }
      }
      // The codes themselves: every int8 of the row's blocks in [-7, 7].
      for (int64_t b = 0; b < n / block; ++b) {
        const int8_t* qs = act == DType::Q8_0 ? static_cast<const BlockQ8_0*>(static_cast<const void*>(q.data()))[b].qs
                           : act == DType::Q8_1
                               ? static_cast<const BlockQ8_1*>(static_cast<const void*>(q.data()))[b].qs
                               : static_cast<const BlockQ8K*>(static_cast<const void*>(q.data()))[b].qs;
        for (int64_t j = 0; j < block; ++j)
          ASSERT_LE(std::abs(int{qs[j]}), 7) << dtype_name(act) << " " << pattern_name(p);
      }
      for (Isa isa : supported_isas()) EXPECT_EQ(quant_kernels(act, isa).quantize_row_a4, k.quantize_row_a4);
    }
  }
  EXPECT_EQ(quant_kernels(DType::Q4_0, Isa::Scalar).quantize_row_a4, nullptr) << "weight formats have none";
}

TEST(ActivationA4, EveryDotProductComputesTheDequantizedSum) {
  const int64_t n = 512;
  for (const FormatPair& f : dot_formats()) {
    const auto& act = quant_kernels(f.act, Isa::Scalar);
    if (act.quantize_row_a4 == nullptr) continue;  // float activations
    const std::vector<float> w = make_row(Pattern::Normal, n, 11), x = make_row(Pattern::Outlier, n, 12);
    std::vector<uint8_t> wq(row_bytes(f.weight, n)), xq(row_bytes(f.act, n));
    const auto& wk = quant_kernels(f.weight, Isa::Scalar);
    if (wk.quantize_weights == nullptr) continue;  // Q2_K, Q3_K: read, never written
    wk.quantize_weights(w.data(), wq.data(), n);
    act.quantize_row_a4(x.data(), xq.data(), n);
    const std::vector<float> wd = dequantize(f.weight, wq, n, Isa::Scalar), xd = dequantize(f.act, xq, n, Isa::Scalar);
    double ref = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      ref += double{wd[i]} * xd[i];
      mag += std::fabs(double{wd[i]} * xd[i]);
    }
    for (Isa isa : supported_isas()) {
      const auto& k = quant_kernels(f.weight, isa);
      const float got = k.vec_dot(n, wq.data(), xq.data());
      // Q8_1's F16 sum term and the F16 scales of both sides: a few 1e-3 of the magnitude.
      EXPECT_NEAR(got, ref, 4e-3 * mag + 1e-6) << label(f.weight, isa);
    }
  }
}

}  // namespace
}  // namespace kestrel::kernels::test
