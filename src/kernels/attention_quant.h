#pragma once
// Attention over a KV cache whose keys and values are any of the KV element
// types (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1; K and V each their own,
// llama.cpp's -ctk/-ctv), with llama.cpp's numerics for such caches (ggml's
// one-row CPU flash attention, ggml_compute_forward_flash_attn_ext_f16_one_chunk):
//   q is quantized once to K's vec_dot type (Q8_0 for Q8_0/Q4_0/Q5_0 keys,
//   Q8_1 for Q4_1/Q5_1, F16/BF16/F32 for the plain types);
//   s_j = vec_dot(k_j, q) * scale      (integer dot products for block formats)
//   online softmax as in attention_kernels.h (std::exp per key);
//   V rows dequantized to F32 and accumulated in F32 (fma), except a F16 V,
//   whose accumulator ggml keeps in F16 (rounded after every update).
// The F16/F16 and F32/F32 caches keep their own kernels (attention_kernels.h);
// these serve every other combination.
//
// Prompt tiles (attention_tiled.h) gather K and V to F32 with the formats'
// dequantizers and run the tiled F32 algorithm, with q rounded to K's vec_dot
// type and widened back (attention_set.cpp), so each score is the integer dot
// product's value up to float summation order. ggml runs its one-row kernel for
// a quantized cache at every batch size; the tiles keep the per-tile softmax
// (polynomial exp, one rescale per 64 keys) for prompt speed: that is the
// remaining difference (tests/unit/kernels/attention_quant_test.cpp bounds it).
//
// Scalar twin: ref::attend_quant with the scalar format kernels. The AVX2
// version uses the AVX2 format kernels (vec_dot sums in another order: within
// n * eps * sum|k q| of the twin, as tests/unit/kernels/simd_equivalence_test.cpp
// bounds it) and vector fma/scale, which round element by element like the twin;
// the AVX-512 level runs it too (kernels/attention_set.cpp says why).
#include <cmath>
#include <cstdint>

#include "core/dtype.h"
#include "core/fp16.h"
#include "kernels/attention_set.h"
#include "kernels/attention_tiled.h"
#include "kernels/quant_kernels.h"

namespace kestrel::kernels {

// One head's rows and the format functions that read them.
struct KvQuantBlocks {
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  const int32_t* ids = nullptr;
  int64_t k_stride = 0;  // bytes from one physical block to the next
  int64_t v_stride = 0;
  int64_t block_len = 0;
  DType k_type = DType::F16;
  DType v_type = DType::F16;
  QuantizeRowFn q_to_vec_dot = nullptr;  // q -> K's vec_dot type
  VecDotFn k_vec_dot = nullptr;
  DequantizeRowFn k_to_float = nullptr;
  DequantizeRowFn v_to_float = nullptr;
  // Smoothed keys (KvRows): null, or the means every score of a block adds back.
  const uint16_t* k_mean = nullptr;
  int64_t mean_stride = 0;
  int64_t mean_id_div = 1;
};

// Logical block b of kv, whose first row is row `first` of n: where its keys
// and values start and how many of the n rows it holds.
struct QuantBlockRows {
  const uint8_t* k;
  const uint8_t* v;
  int rows;
};
inline QuantBlockRows block_rows(const KvQuantBlocks& kv, int64_t b, int64_t first, int64_t n) {
  return {kv.k + kv.ids[b] * kv.k_stride, kv.v + kv.ids[b] * kv.v_stride,
          static_cast<int>(n - first < kv.block_len ? n - first : kv.block_len)};
}

// Smoothed keys: the F16 mean key of logical block b.
inline const uint16_t* block_mean(const KvQuantBlocks& kv, int64_t b) {
  return kv.k_mean + (kv.ids[b] / kv.mean_id_div) * kv.mean_stride;
}

// q . mean of logical block b: what every score of a block of smoothed keys
// adds back (kv/kv_cache.h). Summed in 8 lanes (channel c into lane c % 8),
// folded lane l + l+4, then (t0 + t2) + (t1 + t3): the order an 8-float SIMD
// register sums in, so avx2::attend_sage_quant gives the same bits.
inline float mean_dot(const KvQuantBlocks& kv, int64_t b, const float* q, int d) {
  const uint16_t* m = block_mean(kv, b);
  float lane[8] = {};
  for (int c = 0; c < d; ++c) lane[c % 8] = std::fma(q[c], fp16_to_f32(m[c]), lane[c % 8]);
  float t4[4];
  for (int i = 0; i < 4; ++i) t4[i] = lane[i] + lane[i + 4];
  return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

// The rows of `r` with the format kernels of level `isa`.
KvQuantBlocks quant_rows(const KvRows& r, Isa isa);

// Keys [k0, k0 + nk) as F32, transposed, and values (attention_tiled.h).
void gather_kv_tile(const KvQuantBlocks& kv, int64_t k0, int nk, int d, float* kt, float* vt);

// attn=int8's levels of the quantized weights u_j (ref::attend_int8_quant).
inline constexpr float kInt8PvLevels = 127.0f;

namespace ref {
// q: [d]; out: [d]; rows [0, n). d <= 512.
void attend_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out);
// attn=sage's decode over a block-quantized (smoothed) K: the scores of the
// same integer dot products (plus q . m_b), but the online softmax of the
// sage/int8 kernels: one rescale per KV block, kernels::exp_approx (the
// polynomial the SIMD kernels evaluate 8 keys at a time with the same bits),
// PV accumulated in F32 (no F16 accumulator). llama.cpp's per-key std::exp is
// what makes decode at depth slow; this is the fast order. AVX2 version:
// avx2::attend_sage_quant (the AVX2 format kernels: scores within float
// summation order of these, the rest the same operations).
void attend_sage_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out);
// attn=int8 (INT-FlashAttention, PAPERS.md card 2) over a Q8_0 V (and a
// smoothed Q8_0 K): INT8 Q, K and V, and P.V as an integer dot product. The
// scores and the block-wise softmax are attend_sage_quant's; then, per KV
// block b and per 32-channel group g of V (one Q8_0 block of each row, whose
// scale dv_jg is per token), the token's V scale is folded into its weight
// and the weights are quantized to 7 bits with one scale per (b, g):
//   w_j = p_j * dv_jg,  W = max_j w_j,  u_j = round(w_j * (127 / W))  (0..127)
//   acc_c += (W / 127) * sum_j u_j * v8_jc        (exact int32 sum)
// and the sum of the p_j in F32 as sage keeps it. Why 127 and a scale per
// block rather than the paper's fixed 1/127: a Q8_0 V has a scale per token,
// which a fixed P scale cannot absorb; and u_j <= 127 keeps AVX2's maddubs
// (u8 x s8, pairs summed in int16) from saturating (2 * 127 * 127 < 2^15).
// The integer sums are exact, so the AVX2 version (avx2::attend_int8_quant)
// gives the twin's bits: only the score dot products differ in summation order.
void attend_int8_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_tile_quant(const KvQuantBlocks& kv, int d, const TileRows& rows, float scale, float* scratch);
}  // namespace ref

namespace avx512 {
void attend_tile_quant(const KvQuantBlocks& kv, int d, const TileRows& rows, float scale, float* scratch);
}  // namespace avx512

}  // namespace kestrel::kernels
