#include "ops/matmul.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/quant_kernels.h"

namespace kestrel {
namespace {
// Weight rows handed to a thread at a time: enough to amortise the dynamic
// scheduling, small enough that both cores finish together on 576-wide layers.
constexpr int64_t kRowGrain = 16;
}  // namespace

void matmul(const MatmulContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const auto& kern = kernels::quant_kernels(w.type, ctx.isa);
  const int64_t k = w.cols;
  const int64_t m = w.rows;

  // Quantize the activations once: [n_tokens] rows of vec_dot_type.
  const void* act = x;
  size_t act_stride = static_cast<size_t>(k) * sizeof(float);
  if (kern.vec_dot_type != DType::F32) {
    const auto& act_kern = kernels::quant_kernels(kern.vec_dot_type, ctx.isa);
    act_stride = row_bytes(kern.vec_dot_type, k);
    auto* buf = static_cast<uint8_t*>(ctx.scratch.get(act_stride * static_cast<size_t>(n_tokens)));
    ctx.pool.parallel_for(n_tokens, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) act_kern.quantize_row(x + t * k, buf + t * act_stride, k);
    });
    act = buf;
  }
  const auto* act_bytes = static_cast<const uint8_t*>(act);

  ctx.pool.parallel_for_dynamic(m, kRowGrain, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* wrow = w.row(r);
      for (int64_t t = 0; t < n_tokens; ++t) {
        y[t * m + r] = kern.vec_dot(k, wrow, act_bytes + t * act_stride);
      }
    }
  });
}

void matmul_bias(const MatmulContext& ctx, const Weight& w, const float* bias, const float* x,
                 int64_t n_tokens, float* y) {
  matmul(ctx, w, x, n_tokens, y);
  if (!bias) return;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < w.rows; ++r) y[t * w.rows + r] += bias[r];
}

}  // namespace kestrel
