// Triangular maps of whitened CQ codebooks (kernels/cq_whiten.h).
#include "kernels/cq_whiten.h"

#include <cmath>
#include <cstddef>

namespace kestrel::kernels {

void cq_whiten(const float* w, int c, const float* x, float* y) {
  for (int i = 0; i < c; ++i) {
    float s = 0.0f;
    for (int j = i; j < c; ++j) s = std::fma(w[i * c + j], x[j], s);
    y[i] = s;
  }
}

void cq_unwhiten(const float* w, int c, const float* y, float* x) {
  for (int i = c - 1; i >= 0; --i) {
    float s = y[i];
    for (int j = i + 1; j < c; ++j) s = std::fma(-w[i * c + j], x[j], s);
    x[i] = s / w[i * c + i];
  }
}

// W^T is lower triangular: (W^T x)_i = sum_{j <= i} w[j][i] x_j.
void cq_unwhiten_transposed(const float* w, int c, const float* y, float* x) {
  for (int i = 0; i < c; ++i) {
    float s = y[i];
    for (int j = 0; j < i; ++j) s = std::fma(-w[j * c + i], x[j], s);
    x[i] = s / w[i * c + i];
  }
}

void cq_unwhiten_row(const float* w, int head_dim, int c, float* row) {
  for (int g = 0; g < head_dim / c; ++g) cq_unwhiten(w + static_cast<size_t>(g) * c * c, c, row + g * c, row + g * c);
}

void cq_unwhiten_transposed_row(const float* w, int head_dim, int c, float* row) {
  for (int g = 0; g < head_dim / c; ++g)
    cq_unwhiten_transposed(w + static_cast<size_t>(g) * c * c, c, row + g * c, row + g * c);
}

}  // namespace kestrel::kernels
