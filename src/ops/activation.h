#pragma once
#include <cstdint>

#include "platform/cpu.h"

namespace kestrel {

// SwiGLU: gate[i] = silu(gate[i]) * up[i], in place over n values, with the
// kernel of `isa` (kernels/f32_kernels.h: identical bits on every Isa).
void swiglu_inplace(float* gate, const float* up, int64_t n, Isa isa = best_isa());

// Numerically stable softmax over n values, in place; returns nothing, sums in double.
void softmax_inplace(float* x, int64_t n);

}  // namespace kestrel
