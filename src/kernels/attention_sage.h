#pragma once
// SageAttention (PAPERS.md card 1) for query rows over a paged F16 cache: the
// scalar twin of `attn=sage` (kernels/attention_set.h; AVX2 version in
// kernels/avx2/attention_int8_avx2.cpp, the same bits).
//
// The cache stays F16: K is smoothed and quantized per KV block on the fly, for
// every query row (decode) or once per tile of query rows (prompt). Issue 13's
// INT8-K cache layout (quantize once when the key is written, then read half
// the bytes) is not built: decode pays the quantization on every step, which
// is why sage does not speed decode up here (docs/benchmarks.md).
//
// Per KV block b of kv.block_len keys (the cache's 16-position blocks):
//   m_b   = mean of the block's keys, per channel          (smoothing)
//   k8    = round((k - m_b) / sk_b), sk_b = absmax(K - m_b over the block) / 127
//   q8    = round(q / sq), sq = absmax(q) / 127            (one scale per query row)
//   s_j   = (sq * sk_b * scale) * (sum_c (q8_c + 128) k8_jc - 128 sum_c k8_jc)
//           + scale * (q . m_b)                            (exact correction, once per block)
// The +128 offset is the u8 x s8 form of VNNI's vpdpbusd; in integers it equals
// sum q8 k8, which is what the AVX2 kernel computes (without VNNI, see there),
// so every score has the same bits. q . m_b sums in 8 lanes (channel c in lane
// c % 8), folded as an 8-float register is, so the SIMD kernel matches it.
// Then an online softmax in FP32 (kernels::exp_approx, the polynomial exp the
// SIMD kernels evaluate 8 keys at a time with the same bits; relative error
// < 4e-7), one rescale per block, and PV in
// FP32 over the F16 values. A partial last block uses the mean and scale of the
// rows it holds.
#include <cstdint>

#include "kernels/attention_kernels.h"
#include "kernels/attention_tiled.h"

namespace kestrel::kernels::ref {

// q: [d]; out: [d]; rows [0, n). d <= 512, kv.block_len <= 64. smooth = false
// skips the mean (m_b = 0): what the smoothing buys, measured.
void attend_sage_f16(const KvBlocks<uint16_t> &kv, int64_t n, int d, const float *q, float scale, float *out,
                     bool smooth = true);
// Each row as attend_sage_f16 over its n_visible keys (scratch unused).
void attend_tile_sage_f16(const KvBlocks<uint16_t> &kv, int d, const TileRows &rows, float scale, float *scratch);

}  // namespace kestrel::kernels::ref

namespace kestrel::kernels::avx512 {
// The prompt tile with VNNI's integer dots (kernels/avx512/attention_int8_avx512.cpp),
// the twin's bits.
void attend_tile_sage_f16(const KvBlocks<uint16_t> &kv, int d, const TileRows &rows, float scale, float *scratch);
}  // namespace kestrel::kernels::avx512
