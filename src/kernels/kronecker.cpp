#include "kernels/kronecker.h"

#include <algorithm>

#include "kernels/avx2/avx2_kernels.h"

namespace kestrel::kernels {

void kronecker_row(const float* __restrict x, const float* __restrict s, const float* __restrict a, int n1,
                   const float* __restrict b, int n2, float* __restrict tmp, float* __restrict y) {
  // tmp = (X ⊙ S) B, row by row: tmp[i, :] += (x[i, j] s[i, j]) b[j, :].
  for (int i = 0; i < n1; ++i) {
    float* __restrict t = tmp + static_cast<int64_t>(i) * n2;
    std::fill(t, t + n2, 0.0f);
    for (int j = 0; j < n2; ++j) {
      const int64_t ij = static_cast<int64_t>(i) * n2 + j;
      const float v = s ? x[ij] * s[ij] : x[ij];
      const float* __restrict bj = b + static_cast<int64_t>(j) * n2;
      for (int l = 0; l < n2; ++l) t[l] += v * bj[l];
    }
  }
  // y = Aᵀ tmp: y[k, :] = sum_i a[i, k] tmp[i, :].
  std::fill(y, y + static_cast<int64_t>(n1) * n2, 0.0f);
  for (int i = 0; i < n1; ++i) {
    const float* __restrict t = tmp + static_cast<int64_t>(i) * n2;
    for (int k = 0; k < n1; ++k) {
      const float aik = a[static_cast<int64_t>(i) * n1 + k];
      float* __restrict yk = y + static_cast<int64_t>(k) * n2;
      for (int l = 0; l < n2; ++l) yk[l] += aik * t[l];
    }
  }
}

KroneckerRowFn kronecker_row_kernel(Isa isa) {
  return isa >= Isa::Avx2 && isa_supported(Isa::Avx2) ? avx2::kronecker_row : kronecker_row;
}

}  // namespace kestrel::kernels
