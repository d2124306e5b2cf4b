#pragma once
// The orthonormal Walsh-Hadamard rotation llama.cpp applies to a quantized KV
// cache (its llama-kv-cache.cpp, "attn_rot", since PR #21038): every chunk of
// `block` values of a head is multiplied by H = S / sqrt(block), S the
// Sylvester matrix ([[A, A], [A, -A]] doubling from [1]). H is symmetric and
// H H = I, so rotating q and k leaves q.k unchanged, and rotating v makes the
// attention output H out, which one more rotation turns back. What it buys: it
// spreads a channel outlier over the whole chunk before a block format rounds
// it (q4_0 on SmolLM2-135M: PPL +4.9 without, docs/benchmarks.md).
//
// The fast transform (butterflies a + b, a - b, then one scale) is one
// rounding per stage instead of ggml's matrix product; bits differ from
// llama.cpp's at float rounding, the maths is the same.
#include <cmath>
#include <cstdint>

namespace kestrel::kernels {

// x: [n], n a multiple of block; block a power of two.
inline void hadamard_chunks(float* x, int n, int block) {
  const float norm = 1.0f / std::sqrt(static_cast<float>(block));
  for (int c0 = 0; c0 < n; c0 += block) {
    float* y = x + c0;
    for (int h = 1; h < block; h *= 2)
      for (int i = 0; i < block; i += 2 * h)
        for (int j = i; j < i + h; ++j) {
          const float a = y[j], b = y[j + h];
          y[j] = a + b;
          y[j + h] = a - b;
        }
    for (int j = 0; j < block; ++j) y[j] *= norm;
  }
}

// llama.cpp's rule: a block-quantized K or V (q8_0, q4_0, ...; not f16, bf16,
// f32) of a head size that is a multiple of 64 is rotated. K in chunks of the
// largest power of two (from 64) dividing the head size, V in chunks of 64.
// 0: not rotated.
inline int k_rotation_block(bool quantized, int head_dim) {
  if (!quantized || head_dim % 64 != 0) return 0;
  int n = 64;
  while (head_dim % (2 * n) == 0) n *= 2;
  return n;
}
inline int v_rotation_block(bool quantized, int head_dim) { return quantized && head_dim % 64 == 0 ? 64 : 0; }

}  // namespace kestrel::kernels
