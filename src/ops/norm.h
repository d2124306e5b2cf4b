#pragma once
#include <cstdint>

namespace kestrel {

// out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i], for one row of n.
// The mean is accumulated in double, as ggml does, so long rows do not drift.
void rms_norm_row(const float* x, const float* weight, float eps, int64_t n, float* out);

}  // namespace kestrel
