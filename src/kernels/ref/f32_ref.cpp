// Scalar float primitives: the twins of the AVX2 / AVX-512 versions.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/f32_kernels.h"
#include "kernels/ref/ref_kernels.h"

namespace kestrel::kernels {

float exp_approx(float x) {
  using E = ExpApprox;
  if (!(x >= E::kMin)) return 0.0f;
  x = std::min(x, E::kMax);
  const float n = std::nearbyint(x * E::kLog2e);
  float r = std::fma(n, E::kLn2Hi, x);
  r = std::fma(n, E::kLn2Lo, r);
  float p = E::kPoly[0];
  for (int i = 1; i < 6; ++i) p = std::fma(p, r, E::kPoly[i]);
  const float y = std::fma(p, r * r, r) + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, 4);
  return y * two_n;
}

namespace ref {

void swiglu_f32(int64_t n, float* gate, const float* up) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + exp_approx(-g)) * up[i];
  }
}

float dot_f32(int64_t n, const float* a, const float* b) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(sum);
}

void axpy_f32(int64_t n, float a, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void scale_f32(int64_t n, float a, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

void f16_to_f32_row(int64_t n, const uint16_t* src, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(src[i]);
}

void f32_to_f16_row(int64_t n, const float* src, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_fp16(src[i]);
}

}  // namespace ref
}  // namespace kestrel::kernels
