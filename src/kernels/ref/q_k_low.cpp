// Scalar Q2_K and Q3_K: dequantize and dot product with Q8_K activations, as
// ggml defines them (the sums of each super-block in exact integers, scaled
// once). No quantizer: kestrel reads these formats, it does not write them.
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/ref/ref_kernels.h"

namespace kestrel::kernels::ref {
namespace {

// Element 128h + 32k + l of a super-block, 2 low bits.
int q2_bits(const uint8_t* qs, int e) {
  const int h = e / 128, k = e % 128 / 32, l = e % 32;
  return (qs[32 * h + l] >> (2 * k)) & 3;
}

// Q3_K's signed quant of element e: low 2 bits, minus 4 if its hmask bit is clear.
int q3_value(const BlockQ3K& b, int e) {
  const int h = e / 128, k = e % 128 / 32, l = e % 32;
  const int high = (b.hmask[l] >> (4 * h + k)) & 1;
  return q2_bits(b.qs, e) - (high ? 0 : 4);
}

// Sub-block (16 elements) of element e: 8h + 2k + l / 16 = e / 16.
static_assert(kQKK / 16 == 16);

}  // namespace

void dequantize_row_q2_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ2K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
    for (int e = 0; e < kQKK; ++e) {
      const uint8_t sc = b[i].scales[e / 16];
      dst[e] = d * static_cast<float>(sc & 0xF) * static_cast<float>(q2_bits(b[i].qs, e)) -
               dmin * static_cast<float>(sc >> 4);
    }
  }
}

float vec_dot_q2_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ2K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q2_bits(x[i].qs, 16 * j + l) * y[i].qs[16 * j + l];
      sumi += (x[i].scales[j] & 0xF) * s;
      summ += (x[i].scales[j] >> 4) * y[i].bsums[j];  // the min term from the activation sums
    }
    sum += y[i].d * fp16_to_f32(x[i].d) * static_cast<float>(sumi) -
           y[i].d * fp16_to_f32(x[i].dmin) * static_cast<float>(summ);
  }
  return sum;
}

void dequantize_row_q3_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ3K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = fp16_to_f32(b[i].d);
    for (int e = 0; e < kQKK; ++e)
      dst[e] = d * static_cast<float>(q3_scale(b[i].scales, e / 16) - 32) * static_cast<float>(q3_value(b[i], e));
  }
}

float vec_dot_q3_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ3K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q3_value(x[i], 16 * j + l) * y[i].qs[16 * j + l];
      sumi += (q3_scale(x[i].scales, j) - 32) * s;
    }
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(sumi);
  }
  return sum;
}

}  // namespace kestrel::kernels::ref
