// 4-bit activations in the 8-bit activation formats (`act=a4`, W4A4 in
// issue 17): each block keeps its layout (Q8_0 and Q8_1: 32 values, Q8_K:
// 256 with sums of 16), its scale becomes amax / 7 and its codes lie in
// [-7, 7]. Every integer dot product then runs unchanged on 4-bit values:
// x86 has no 4-bit multiply, so the codes travel in bytes (PAPERS.md card 5's
// CPU mapping). Symmetric (no -8) so a block's scale is its largest value.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/ref/rounding.h"

namespace kestrel::kernels::ref {
namespace {

constexpr float kA4Max = 7.0f;

// Codes of one block of n values; returns the scale d (0 for a zero block) and their sum.
float quantize_block_a4(const float* x, int n, int8_t* q, int* sum) {
  float amax = 0.0f;
  for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / kA4Max;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int s = 0;
  for (int j = 0; j < n; ++j) {
    q[j] = static_cast<int8_t>(std::clamp(nearest_int(x[j] * id), -7, 7));
    s += q[j];
  }
  *sum = s;
  return d;
}

}  // namespace

void quantize_row_q8_0_a4(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    int sum = 0;
    b[i].d = f32_to_fp16(quantize_block_a4(src, kQK, b[i].qs, &sum));
  }
}

void quantize_row_q8_1_a4(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    int sum = 0;
    const float d = quantize_block_a4(src, kQK, b[i].qs, &sum);
    b[i].d = f32_to_fp16(d);
    b[i].s = f32_to_fp16(d * static_cast<float>(sum));
  }
}

void quantize_row_q8_K_a4(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    int sum = 0;
    b[i].d = quantize_block_a4(src, kQKK, b[i].qs, &sum);
    for (int j = 0; j < kQKK / 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += b[i].qs[16 * j + l];
      b[i].bsums[j] = static_cast<int16_t>(s);
    }
  }
}

}  // namespace kestrel::kernels::ref
