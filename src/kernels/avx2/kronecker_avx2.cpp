// kronecker_row (kernels/kronecker.h) with AVX2 FMAs: the same two passes, 8
// output columns per instruction. FMA rounds once where the scalar twin rounds
// twice, so the results agree within float rounding, not bit for bit (nothing
// downstream needs the twin's bits: the transform feeds a quantizer).
#include <immintrin.h>

#include <algorithm>

#include "kernels/avx2/avx2_kernels.h"

namespace kestrel::kernels::avx2 {
namespace {

// acc[0, n) += v * row[0, n).
inline void axpy(float v, const float* row, float* acc, int n) {
  const __m256 vv = _mm256_set1_ps(v);
  int l = 0;
  for (; l + 8 <= n; l += 8)
    _mm256_storeu_ps(acc + l, _mm256_fmadd_ps(vv, _mm256_loadu_ps(row + l), _mm256_loadu_ps(acc + l)));
  for (; l < n; ++l) acc[l] += v * row[l];
}

}  // namespace

void kronecker_row(const float* x, const float* s, const float* a, int n1, const float* b, int n2, float* tmp,
                   float* y) {
  for (int i = 0; i < n1; ++i) {
    float* t = tmp + static_cast<int64_t>(i) * n2;
    std::fill(t, t + n2, 0.0f);
    for (int j = 0; j < n2; ++j) {
      const int64_t ij = static_cast<int64_t>(i) * n2 + j;
      axpy(s ? x[ij] * s[ij] : x[ij], b + static_cast<int64_t>(j) * n2, t, n2);
    }
  }
  std::fill(y, y + static_cast<int64_t>(n1) * n2, 0.0f);
  for (int i = 0; i < n1; ++i)
    for (int k = 0; k < n1; ++k)
      axpy(a[static_cast<int64_t>(i) * n1 + k], tmp + static_cast<int64_t>(i) * n2, y + static_cast<int64_t>(k) * n2,
           n2);
}

}  // namespace kestrel::kernels::avx2
