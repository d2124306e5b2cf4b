#pragma once
// INT-FlashAttention (PAPERS.md card 2) for query rows over a paged F16 cache:
// the scalar twin of `attn=int8` (kernels/attention_set.h; AVX2 version in
// kernels/avx2/attention_int8_avx2.cpp, the same bits: every dot product is an
// integer, the float steps run in the twin's order). K and V are quantized per
// KV block on the fly, the cache stays F16 (as for sage: kernels/attention_sage.h).
//
//   q8 = round(q / sq), sq = absmax(q) / 127                (per token)
//   k8_j = round(k_j / sk_j), sk_j = absmax(k_j) / 127      (per token)
//   v8_jc = round(v_jc / sv_bc), sv_bc = absmax_j∈b(v_jc) / 127
//                                      (per channel, per KV block b of 16 keys)
//   s_j = sq * sk_j * scale * sum_c q8_c k8_jc               (integer dot)
// per KV block (one rescale per block; e^ is kernels::exp_approx, as for sage):
//   m' = max(m, max_j s_j); acc *= e^(m - m'); l *= e^(m - m')
//   p8_j = round(255 * e^(s_j - m'))                          (u8, fixed scale 1/255)
//   l += sum_j p8_j / 255;  acc_c += (sv_bc / 255) * sum_j p8_j v8_jc   (integer PV)
//   out = acc / l
// Why 255 and not the paper's 127: P is never negative, so the u8 operand of
// VNNI's vpdpbusd (u8 x s8) holds it directly and 255 levels halve the rounding
// step of every probability (the paper uses s8 x s8 on GPUs, hence 127). The
// sum l is taken over the rounded p8, so the weights the output averages with
// are exactly the ones that were multiplied.
#include <cstdint>

#include "kernels/attention_kernels.h"
#include "kernels/attention_tiled.h"

namespace kestrel::kernels::ref {

// q: [d]; out: [d]; rows [0, n). d <= 512, kv.block_len <= 64.
void attend_int8_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
// Each row as attend_int8_f16 over its n_visible keys (scratch unused).
void attend_tile_int8_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch);

}  // namespace kestrel::kernels::ref

namespace kestrel::kernels::avx512 {
// The prompt tile with VNNI's integer dots (kernels/avx512/attention_int8_avx512.cpp),
// the twin's bits.
void attend_tile_int8_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch);
}  // namespace kestrel::kernels::avx512
