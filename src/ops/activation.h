#pragma once
#include <cstdint>

namespace kestrel {

// SwiGLU: gate[i] = silu(gate[i]) * up[i], in place over n values.
void swiglu_inplace(float* gate, const float* up, int64_t n);

// Numerically stable softmax over n values, in place; returns nothing, sums in double.
void softmax_inplace(float* x, int64_t n);

}  // namespace kestrel
