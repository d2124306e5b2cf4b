#pragma once
// y = x · Wᵀ for a quantized weight: x [n_tokens, cols] f32, y [n_tokens, rows] f32.
// Activations are first quantized to the format the weight's dot product wants
// (Q8_0, Q8_1, Q8_K, F16, ...), as llama.cpp does, so results match its numerics.
#include <cstdint>

#include "ops/weight.h"
#include "ops/workspace.h"
#include "platform/cpu.h"
#include "platform/thread_pool.h"

namespace kestrel {

struct MatmulContext {
  ThreadPool& pool;
  Workspace& scratch;
  Isa isa;
};

void matmul(const MatmulContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y);

// The same, with a bias [rows] added to every output row (qwen2's QKV projections).
void matmul_bias(const MatmulContext& ctx, const Weight& w, const float* bias, const float* x,
                 int64_t n_tokens, float* y);

}  // namespace kestrel
