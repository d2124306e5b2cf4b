#pragma once
// AVX2 pieces of the attention kernels over quantized caches, shared by
// kernels/avx2/attention_avx2.cpp (the row kernels) and
// attention_group_avx2.cpp (the GQA group kernels). Included only by translation units
// under kernels/avx2/ (compiled with its -m flags); an anonymous namespace, as
// in avx2-inl.h, so no other ISA's copy can be linked in its place.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/fp16.h"
#include "kernels/attention_quant.h"
#include "kernels/avx2/avx2-inl.h"
#include "kernels/blocks.h"
#include "kernels/f32_kernels.h"
#include "kernels/prefetch.h"

namespace kestrel::kernels::avx2 {
namespace {

inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 round_f16(__m256 x) { return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT)); }

// Values 8i..8i+7 of a Q8_0 row as floats, q * d: the products
// dequantize_row_q8_0 stores (the same bits), without the call and the row
// buffer (a call would also spill the accumulators every key).
inline __m256 q8_0_vec(const BlockQ8_0* b, int i) {
  const BlockQ8_0& blk = b[i / 4];
  const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.qs + 8 * (i % 4)));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(_cvtsh_ss(blk.d)));
}

// Logical block b's keys, values and mean, towards L1 while block b - 1 is
// computed: blocks of one head lie a whole physical block of every layer and
// head apart (kv/kv_cache.h), a stride no hardware prefetcher follows across
// pages.
inline void prefetch_block(const KvQuantBlocks& kv, int64_t b, int64_t kr, int64_t vr, int d) {
  const char* k = reinterpret_cast<const char*>(kv.k + kv.ids[b] * kv.k_stride);
  const char* v = reinterpret_cast<const char*>(kv.v + kv.ids[b] * kv.v_stride);
  prefetch_l1_range(k, kv.block_len * kr);
  prefetch_l1_range(v, kv.block_len * vr);
  if (kv.k_mean) prefetch_l1_range(block_mean(kv, b), d * 2);
}

// The twin's mean_dot (kernels/attention_quant.h): its 8 lanes are a
// register's.
inline float mean_dot8(const KvQuantBlocks& kv, int64_t b, const float* q, int d) {
  const uint16_t* m = block_mean(kv, b);
  __m256 a = _mm256_setzero_ps();
  for (int c = 0; c < d; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), load8(m + c), a);
  return hsum_ps(a);
}

// One more score s in the online softmax (the twins' per-key step): `ms` is
// the factor the running sums take, `vs` the new row's weight, and
// `rescale` says s raised the max (the accumulator is then multiplied by ms).
struct OnlineStep {
  float ms = 1.0f, vs = 1.0f;
  bool rescale = false;
};
inline OnlineStep online_step(float s, float& max) {
  OnlineStep st;
  if (s > max) {
    st.ms = std::exp(max - s);
    st.rescale = true;
    max = s;
  } else {
    st.vs = std::exp(s - max);
  }
  return st;
}

// The scores of one block of smoothed (or plain) quantized keys, as the twins
// compute them (the format's vec_dot per key): s[j] = (k_j . q + q . m_b) *
// scale for j < rows; returns their max. Q8_0 keys have a faster form for a
// whole block (attention_group_avx2.cpp q8_scores).
inline float block_scores(const KvQuantBlocks& kv, int64_t b, const uint8_t* k, int rows, int64_t kr, const uint8_t* qq,
                          const float* q, int d, float scale, float* s) {
  const float qm = kv.k_mean ? mean_dot8(kv, b, q, d) : 0.0f;
  float bmax = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < rows; ++j) {
    s[j] = (kv.k_vec_dot(d, k + j * kr, qq) + qm) * scale;
    bmax = std::max(bmax, s[j]);
  }
  return bmax;
}

// The block-wise online softmax step of the sage/int8 twins
// (ref::softmax_block): the running max rises to the block's, the nacc
// accumulators and the sum are rescaled once, and p[j] = e^(s_j - max) for
// j < rows (exp_approx8: the twin's exp_approx bits), summed into `sum` in
// key order. p and s need room for whole groups of 8.
inline void block_weights(float* s, int rows, float bmax, float& max, float& sum, __m256* acc, int nacc, float* p) {
  const float mnew = std::max(max, bmax);
  const float ms = kernels::exp_approx(max - mnew);
  const __m256 msv = _mm256_set1_ps(ms);
  for (int i = 0; i < nacc; ++i) acc[i] = _mm256_mul_ps(acc[i], msv);
  sum *= ms;
  max = mnew;
  for (int j = rows; j % 8 != 0; ++j) s[j] = 0.0f;  // exp_approx8 reads whole groups of 8
  const __m256 mv = _mm256_set1_ps(max);
  for (int j = 0; j < rows; j += 8) _mm256_store_ps(p + j, exp_approx8(_mm256_sub_ps(_mm256_load_ps(s + j), mv)));
  for (int j = 0; j < rows; ++j) sum += p[j];
}

}  // namespace
}  // namespace kestrel::kernels::avx2
