#include "ops/activation.h"

#include <cmath>
#include <limits>

#include "kernels/f32_kernels.h"

namespace kestrel {

void swiglu_inplace(float* gate, const float* up, int64_t n, Isa isa) {
  kernels::f32_kernels(isa).swiglu(n, gate, up);
}

void softmax_inplace(float* x, int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max = x[i] > max ? x[i] : max;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - max);
    x[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace kestrel
