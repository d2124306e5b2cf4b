#pragma once
// SageAttention (PAPERS.md card 1) for one query row over a paged F16 cache:
// the scalar reference the SIMD kernels and the INT8-K cache layout of issue 13
// (step 2) will be checked against. Not wired into the kernel table yet.
//
// Per KV block b of kv.block_len keys (the cache's 16-position blocks):
//   m_b   = mean of the block's keys, per channel          (smoothing)
//   k8    = round((k - m_b) / sk_b), sk_b = absmax(K - m_b over the block) /
//   127 q8    = round(q / sq), sq = absmax(q) / 127            (one scale per
//   query row) s_j   = (sq * sk_b * scale) * (sum_c (q8_c + 128) k8_jc - 128
//   sum_c k8_jc)
//           + scale * (q . m_b)                            (exact correction,
//           once per block)
// The +128 offset is the u8 x s8 form of AVX-512 VNNI's vpdpbusd; in integers
// it is exact, so the twin and the VNNI kernel agree on every score bit. Then
// an online softmax in FP32 (std::exp), one rescale per block, and PV in FP32
// over the F16 values. A partial last block uses the mean and scale of the rows
// it holds.
#include <cstdint>

#include "kernels/attention_kernels.h"

namespace kestrel::kernels::ref {

// q: [d]; out: [d]; rows [0, n). d <= 512, kv.block_len <= 64. smooth = false
// skips the mean (m_b = 0): what the smoothing buys, measured.
void attend_sage_f16(const KvBlocks<uint16_t> &kv, int64_t n, int d, const float *q, float scale, float *out,
                     bool smooth = true);

}  // namespace kestrel::kernels::ref
