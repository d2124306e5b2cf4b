// AVX2 attention kernels for one query row: the arithmetic of the scalar twins
// (kernels/ref/attention_ref.cpp, attention_quant_ref.cpp), in the same order.
// The twins' dot product keeps four 16-lane accumulators over blocks of 64
// (ggml's AVX-512 order); here each 16-lane accumulator is two 8-lane halves
// (lo: lanes 0..7, hi: lanes 8..15), and the fold adds lo + hi first, which is
// the twin's t8[l] = lane[l] + lane[l + 8]. Eight accumulators of 8 floats keep
// 8 FMAs in flight, two per cycle over the 4-cycle latency.
#include "kernels/avx2/attention_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention_set.h"
#include "kernels/avx2/attention_quant-inl.h"
#include "kernels/avx2/avx2-inl.h"
#include "kernels/blocks.h"
#include "kernels/f32_kernels.h"

namespace kestrel::kernels::avx2 {
namespace {

// The twin's dot_like_ggml over one key row, q already in registers' memory.
template <class T>
inline float dot_like_ggml(const T* k, const __m256* q, int nv, int body) {
  __m256 a0l = _mm256_setzero_ps(), a0h = a0l, a1l = a0l, a1h = a0l, a2l = a0l, a2h = a0l, a3l = a0l, a3h = a0l;
  for (int i = 0; i < body; i += 8) {
    a0l = _mm256_fmadd_ps(load8(k + 8 * i), q[i], a0l);
    a0h = _mm256_fmadd_ps(load8(k + 8 * i + 8), q[i + 1], a0h);
    a1l = _mm256_fmadd_ps(load8(k + 8 * i + 16), q[i + 2], a1l);
    a1h = _mm256_fmadd_ps(load8(k + 8 * i + 24), q[i + 3], a1h);
    a2l = _mm256_fmadd_ps(load8(k + 8 * i + 32), q[i + 4], a2l);
    a2h = _mm256_fmadd_ps(load8(k + 8 * i + 40), q[i + 5], a2h);
    a3l = _mm256_fmadd_ps(load8(k + 8 * i + 48), q[i + 6], a3l);
    a3h = _mm256_fmadd_ps(load8(k + 8 * i + 56), q[i + 7], a3h);
  }
  // lane[l] = (acc0 + acc2) + (acc1 + acc3), then t8 = lane[0..8) + lane[8..16).
  const __m256 lo = _mm256_add_ps(_mm256_add_ps(a0l, a2l), _mm256_add_ps(a1l, a3l));
  const __m256 hi = _mm256_add_ps(_mm256_add_ps(a0h, a2h), _mm256_add_ps(a1h, a3h));
  double dot = hsum_ps(_mm256_add_ps(lo, hi));  // t4, then (t0 + t2) + (t1 + t3)
  if (body < nv) {  // the tail, summed in double like the twin
    alignas(32) float kt[8], qt[8];
    for (int i = body; i < nv; ++i) {
      _mm256_store_ps(kt, load8(k + 8 * i));
      _mm256_store_ps(qt, q[i]);
      for (int l = 0; l < 8; ++l) dot += static_cast<double>(kt[l] * qt[l]);
    }
  }
  return static_cast<float>(dot);
}

template <bool kF16, class T>
void attend(const KvBlocks<T>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  // Vector path for d a multiple of 8 (every llama-family head size); the
  // scalar twin covers the rest.
  if (d % 8 != 0) {
    if constexpr (kF16) ref::attend_f16(kv, n, d, q, scale, out);
    else ref::attend_f32(kv, n, d, q, scale, out);
    return;
  }
  const int nv = d / 8;
  const int body = (d & ~63) / 8;  // vectors covered by whole blocks of 64
  __m256 qr[64], acc[64];
  for (int i = 0; i < nv; ++i) {
    const __m256 x = _mm256_loadu_ps(q + 8 * i);
    qr[i] = kF16 ? round_f16(x) : x;
    acc[i] = _mm256_setzero_ps();
  }
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const T* k = kv.k + kv.ids[b] * kv.stride;
    const T* v = kv.v + kv.ids[b] * kv.stride;
    const int64_t rows = std::min(kv.block_len, n - first);
    for (int64_t j = 0; j < rows; ++j) {
      const float s = dot_like_ggml(k + j * d, qr, nv, body) * scale;
      const auto [ms, vs, rescale] = online_step(s, max);
      if (rescale) {
        const __m256 m = _mm256_set1_ps(ms);
        for (int i = 0; i < nv; ++i) acc[i] = kF16 ? round_f16(_mm256_mul_ps(acc[i], m)) : _mm256_mul_ps(acc[i], m);
      }
      const __m256 w = _mm256_set1_ps(vs);
      const T* vr = v + j * d;
      for (int i = 0; i < nv; ++i) {
        const __m256 a = _mm256_fmadd_ps(load8(vr + 8 * i), w, acc[i]);
        acc[i] = kF16 ? round_f16(a) : a;
      }
      sum = sum * ms + vs;
    }
  }
  const __m256 inv = _mm256_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
  for (int i = 0; i < nv; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
}

// Brings a block's key and value rows toward L1 while the previous block is
// scored: the blocks of a head sit anywhere in the pool, so the hardware
// prefetcher loses the stream at every block boundary.
template <class T>
inline void prefetch_rows(const T* k, const T* v, int64_t rows, int d) {
  const int64_t bytes = rows * d * static_cast<int64_t>(sizeof(T));
  for (int64_t off = 0; off < bytes; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(k) + off, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v) + off, _MM_HINT_T0);
  }
}

// A GQA group (nq <= kMaxGroup heads reading one KV head): each key and value
// row is widened to F32 once (exact) and then scored and accumulated for every
// head with attend's operations in attend's order, so each head gets attend's
// bits while the cache is streamed once for the group instead of once per head
// (at depth 8192, Qwen2.5-1.5B's 6 query heads per KV head read 4 MB of F16 K and
// V per layer and KV head each). The heads' accumulators live in memory (L1).
template <bool kF16, class T>
void attend_group(const KvBlocks<T>& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                  float* const* out) {
  if (d % 8 != 0 || d > 512) {
    for (int h = 0; h < nq; ++h) attend<kF16>(kv, n, d, q[h], scale, out[h]);
    return;
  }
  const int nv = d / 8;
  const int body = (d & ~63) / 8;
  thread_local std::vector<__m256> qr, acc;  // [head][nv]
  qr.resize(static_cast<size_t>(nq) * nv);
  acc.resize(qr.size());
  float sum[kMaxGroup], max[kMaxGroup];
  for (int h = 0; h < nq; ++h) {
    for (int i = 0; i < nv; ++i) {
      const __m256 x = _mm256_loadu_ps(q[h] + 8 * i);
      qr[h * nv + i] = kF16 ? round_f16(x) : x;
      acc[h * nv + i] = _mm256_setzero_ps();
    }
    sum[h] = 0.0f;
    max[h] = -std::numeric_limits<float>::infinity();
  }
  alignas(32) float kf[512], vf[512];
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const T* k = kv.k + kv.ids[b] * kv.stride;
    const T* v = kv.v + kv.ids[b] * kv.stride;
    const int64_t rows = std::min(kv.block_len, n - first);
    if (first + kv.block_len < n)
      prefetch_rows(kv.k + kv.ids[b + 1] * kv.stride, kv.v + kv.ids[b + 1] * kv.stride,
                    std::min(kv.block_len, n - first - kv.block_len), d);
    for (int64_t j = 0; j < rows; ++j) {
      const float* kr = kf;
      const float* vr = vf;
      if constexpr (kF16) {
        for (int i = 0; i < nv; ++i) {
          _mm256_store_ps(kf + 8 * i, load8(k + j * d + 8 * i));
          _mm256_store_ps(vf + 8 * i, load8(v + j * d + 8 * i));
        }
      } else {
        kr = k + j * d;
        vr = v + j * d;
      }
      for (int h = 0; h < nq; ++h) {
        __m256* a = acc.data() + static_cast<size_t>(h) * nv;
        const float s = dot_like_ggml(kr, qr.data() + static_cast<size_t>(h) * nv, nv, body) * scale;
        const auto [ms, vs, rescale] = online_step(s, max[h]);
        if (rescale) {
          const __m256 m = _mm256_set1_ps(ms);
          for (int i = 0; i < nv; ++i) a[i] = kF16 ? round_f16(_mm256_mul_ps(a[i], m)) : _mm256_mul_ps(a[i], m);
        }
        const __m256 w = _mm256_set1_ps(vs);
        for (int i = 0; i < nv; ++i) {
          const __m256 x = _mm256_fmadd_ps(load8(vr + 8 * i), w, a[i]);
          a[i] = kF16 ? round_f16(x) : x;
        }
        sum[h] = sum[h] * ms + vs;
      }
    }
  }
  for (int h = 0; h < nq; ++h) {
    const __m256 inv = _mm256_set1_ps(sum[h] == 0.0f ? 0.0f : 1.0f / sum[h]);
    for (int i = 0; i < nv; ++i) _mm256_storeu_ps(out[h] + 8 * i, _mm256_mul_ps(acc[h * nv + i], inv));
  }
}

}  // namespace

void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  attend<true>(kv, n, d, q, scale, out);
}
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  attend<false>(kv, n, d, q, scale, out);
}
void attend_f16_group(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                      float* const* out) {
  attend_group<true>(kv, n, d, q, nq, scale, out);
}
void attend_f32_group(const KvBlocks<float>& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                      float* const* out) {
  attend_group<false>(kv, n, d, q, nq, scale, out);
}

namespace {

// Quantized or mixed caches: the twin's arithmetic with the AVX2 format
// kernels (quant_rows(.., Isa::Avx2)) and vector scale/fma, which round
// element by element like the twin's loops. Q8_0 keys go through the group
// kernel (attention_group_avx2.cpp: the block's scores first, 8 keys per
// register, then the same per-key online softmax). NV as in sage_quant below.
template <int NV>
void quant_exact(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  alignas(64) uint8_t qq[512 * sizeof(float)];
  alignas(64) float vrow[512];
  __m256 acc[NV ? NV : 64];
  kv.q_to_vec_dot(q, qq, d);
  const int nv = NV ? NV : d / 8;
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d));
  const int64_t vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  const bool v16 = kv.v_type == DType::F16;  // ggml keeps the V sum in F16 then
  for (int i = 0; i < nv; ++i) acc[i] = _mm256_setzero_ps();
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const auto [k, v, rows] = block_rows(kv, b, first, n);
    if (first + kv.block_len < n) prefetch_block(kv, b + 1, kr, vr, d);
    for (int64_t j = 0; j < rows; ++j) {
      const float s = kv.k_vec_dot(d, k + j * kr, qq) * scale;
      const auto [ms, vs, rescale] = online_step(s, max);
      if (rescale) {
        const __m256 m = _mm256_set1_ps(ms);
        for (int i = 0; i < nv; ++i) acc[i] = v16 ? round_f16(_mm256_mul_ps(acc[i], m)) : _mm256_mul_ps(acc[i], m);
      }
      const __m256 w = _mm256_set1_ps(vs);
      if (v16) {  // F16 V: convert in registers, no row buffer
        const uint16_t* vh = reinterpret_cast<const uint16_t*>(v + j * vr);
        for (int i = 0; i < nv; ++i) acc[i] = round_f16(_mm256_fmadd_ps(load8(vh + 8 * i), w, acc[i]));
      } else if (kv.v_type == DType::Q8_0) {
        const auto* vb = reinterpret_cast<const BlockQ8_0*>(v + j * vr);
        for (int i = 0; i < nv; ++i) acc[i] = _mm256_fmadd_ps(q8_0_vec(vb, i), w, acc[i]);
      } else {
        kv.v_to_float(v + j * vr, vrow, d);
        for (int i = 0; i < nv; ++i) acc[i] = _mm256_fmadd_ps(_mm256_load_ps(vrow + 8 * i), w, acc[i]);
      }
      sum = sum * ms + vs;
    }
  }
  const __m256 inv = _mm256_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
  for (int i = 0; i < nv; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
}

}  // namespace

void attend_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  if (d % 8 != 0) {
    ref::attend_quant(kv, n, d, q, scale, out);
    return;
  }
  // Q8_0 keys: the group kernel's transposed scoring, so that a head decoded
  // alone or with its group gets the same bits (attention_group_avx2.cpp).
  if (kv.k_type == DType::Q8_0 && d <= 512 && kv.block_len <= 64)
    return attend_quant_group(kv, n, d, &q, 1, scale, &out);
  if (d == 64) return quant_exact<8>(kv, n, d, q, scale, out);
  if (d == 128) return quant_exact<16>(kv, n, d, q, scale, out);
  quant_exact<0>(kv, n, d, q, scale, out);
}

namespace {

// attn=sage over smoothed block-quantized keys: the twin's operations
// (ref::attend_sage_quant) with the AVX2 format kernels, exp_approx8 over 8
// scores at a time (the twin's exp_approx bits) and vector fma per channel.
// NV: vectors of 8 per head row when known at compile time (64 and 128: the
// accumulators then stay in registers), 0 for any multiple of 8.
template <int NV>
void sage_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  alignas(64) uint8_t qq[512 * sizeof(float)];
  alignas(64) float vrow[512], s[64], p[64];
  __m256 acc[NV ? NV : 64];
  kv.q_to_vec_dot(q, qq, d);
  const int nv = NV ? NV : d / 8;
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d));
  const int64_t vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  const bool v16 = kv.v_type == DType::F16;
  for (int i = 0; i < nv; ++i) acc[i] = _mm256_setzero_ps();
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const auto [k, v, rows] = block_rows(kv, b, first, n);
    if (first + kv.block_len < n) prefetch_block(kv, b + 1, kr, vr, d);
    const float bmax = block_scores(kv, b, k, rows, kr, qq, q, d, scale, s);
    block_weights(s, rows, bmax, max, sum, acc, nv, p);
    for (int j = 0; j < rows; ++j) {
      const __m256 w = _mm256_set1_ps(p[j]);
      if (v16) {
        const uint16_t* vh = reinterpret_cast<const uint16_t*>(v + j * vr);
        for (int i = 0; i < nv; ++i) acc[i] = _mm256_fmadd_ps(w, load8(vh + 8 * i), acc[i]);
      } else if (kv.v_type == DType::Q8_0) {
        const auto* vb = reinterpret_cast<const BlockQ8_0*>(v + j * vr);
        for (int i = 0; i < nv; ++i) acc[i] = _mm256_fmadd_ps(w, q8_0_vec(vb, i), acc[i]);
      } else {
        kv.v_to_float(v + j * vr, vrow, d);
        for (int i = 0; i < nv; ++i) acc[i] = _mm256_fmadd_ps(w, _mm256_load_ps(vrow + 8 * i), acc[i]);
      }
    }
  }
  const __m256 inv = _mm256_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
  for (int i = 0; i < nv; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
}

}  // namespace

void attend_sage_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  if (d % 8 != 0 || kv.block_len > 64) {
    ref::attend_sage_quant(kv, n, d, q, scale, out);
    return;
  }
  // Q8_0 keys: the group kernel's transposed scoring, so that a head decoded
  // alone or with its group gets the same bits (attention_group_avx2.cpp).
  if (kv.k_type == DType::Q8_0 && d <= 512) return attend_sage_quant_group(kv, n, d, &q, 1, scale, &out);
  if (d == 64) return sage_quant<8>(kv, n, d, q, scale, out);
  if (d == 128) return sage_quant<16>(kv, n, d, q, scale, out);
  sage_quant<0>(kv, n, d, q, scale, out);
}

}  // namespace kestrel::kernels::avx2
