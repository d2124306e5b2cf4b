// Decode for a whole GQA group at once: the nq query heads that read one KV
// head, over block-quantized keys: attn=int8 over a Q8_0 V
// (ref::attend_int8_quant), attn=sage over any V (ref::attend_sage_quant), both
// on smoothed keys, and attn=exact over Q8_0 keys (ref::attend_quant,
// llama.cpp's one-row numerics: std::exp per key). Each block of 16 keys and
// values is read from memory once for all heads (per head, the row kernels
// stream the whole cache again: 0.5 MB per head at 4k positions of a 64-wide
// head, past L2), and the work that does not depend on the query is done once:
// Q8_0 keys transposed for scoring, values widened to F32 (sage, exact) or
// interleaved (int8). Per head the operations are the row kernels' (same
// scores, same softmax steps, same P.V order), so each head's output has the
// row kernel's bits; for Q8_0 keys the row kernels are this one with one head.
//
// int8's P.V on AVX2: AVX2 has no u8 x s8 dot product into 32 bits (that is
// VNNI's vpdpbusd); its pair is maddubs (u8 x s8, adjacent pairs summed into
// int16) then madd with ones (adjacent int16 pairs into int32): four keys'
// products per channel in two instructions, once four V rows are interleaved
// so that each 32-bit lane holds one channel of four consecutive keys (the
// layout VNNI reads, made here with six unpacks per four rows of 32 channels).
// After the unpacks, register i of a 32-channel group holds channels
// 4i..4i+3 in its low 128 bits and 16+4i..16+4i+3 in its high 128 bits
// (unpack works within 128-bit lanes): the int8 accumulators keep that order
// and the output is written back in channel order at the end.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx2/attention_quant-inl.h"

namespace kestrel::kernels::avx2 {
namespace {

constexpr int kMaxRows = 64;  // block_len at most (attention_quant.h)

// Four rows' 32 values of one group, interleaved: x[i] as described above.
inline void interleave4(const int8_t* r0, const int8_t* r1, const int8_t* r2, const int8_t* r3, __m256i* x) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1));
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r2));
  const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r3));
  const __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
  const __m256i ce_lo = _mm256_unpacklo_epi8(c, e), ce_hi = _mm256_unpackhi_epi8(c, e);
  x[0] = _mm256_unpacklo_epi16(ab_lo, ce_lo);
  x[1] = _mm256_unpackhi_epi16(ab_lo, ce_lo);
  x[2] = _mm256_unpacklo_epi16(ab_hi, ce_hi);
  x[3] = _mm256_unpackhi_epi16(ab_hi, ce_hi);
}

// What int8 prepares of a block's Q8_0 values for every head: per 32-channel
// group g, the rows' scales dv[g] (0 past the block's rows) and the rows
// interleaved by four, x[(quad * ng + g) * 4 + i].
struct Int8Values {
  alignas(32) float dv[16][kMaxRows + 8];
  __m256i x[(kMaxRows / 4) * 16 * 4];
};

void prepare_int8(const uint8_t* v, int rows, int64_t vr, int ng, Int8Values& pv) {
  alignas(32) static const int8_t kZeroRow[32] = {};
  const int rows8 = (rows + 7) & ~7;
  for (int g = 0; g < ng; ++g) {
    for (int j = 0; j < rows; ++j) pv.dv[g][j] = half_to_float(reinterpret_cast<const BlockQ8_0*>(v + j * vr)[g].d);
    for (int j = rows; j < rows8; ++j) pv.dv[g][j] = 0.0f;
  }
  // Rows past the block's end read a zero row: a block of one row (a windowed
  // view) has no neighbours to read.
  for (int j0 = 0, quad = 0; j0 < rows; j0 += 4, ++quad)
    for (int g = 0; g < ng; ++g) {
      const int8_t* r[4];
      for (int t = 0; t < 4; ++t)
        r[t] = j0 + t < rows ? reinterpret_cast<const BlockQ8_0*>(v + (j0 + t) * vr)[g].qs : kZeroRow;
      interleave4(r[0], r[1], r[2], r[3], &pv.x[(quad * ng + g) * 4]);
    }
}

// One head's integer P.V over a prepared block: p[j] for j < rows, 0 up to a
// multiple of 8 (block_weights leaves the padding as it finds it).
inline void int8_pv(const Int8Values& pv, const float* p, int rows, int ng, __m256* acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  const int rows8 = (rows + 7) & ~7;
  alignas(32) float w[kMaxRows + 8];
  alignas(32) int32_t u[kMaxRows + 8];
  for (int g = 0; g < ng; ++g) {
    __m256 wmax = _mm256_setzero_ps();
    for (int j = 0; j < rows8; j += 8) {
      const __m256 x = _mm256_mul_ps(_mm256_load_ps(p + j), _mm256_load_ps(pv.dv[g] + j));
      _mm256_store_ps(w + j, x);
      wmax = _mm256_max_ps(wmax, x);
    }
    const float wm = hmax_ps(wmax);
    if (wm == 0.0f) continue;
    const __m256 inv = _mm256_set1_ps(kInt8PvLevels / wm);
    for (int j = 0; j < rows8; j += 8)
      _mm256_store_si256(reinterpret_cast<__m256i*>(u + j),
                         _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(w + j), inv)));
    __m256i isum[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int j0 = 0, quad = 0; j0 < rows; j0 += 4, ++quad) {
      const uint32_t four = static_cast<uint32_t>(u[j0]) | static_cast<uint32_t>(u[j0 + 1]) << 8 |
                            static_cast<uint32_t>(u[j0 + 2]) << 16 | static_cast<uint32_t>(u[j0 + 3]) << 24;
      const __m256i pw = _mm256_set1_epi32(static_cast<int>(four));
      const __m256i* x = &pv.x[(quad * ng + g) * 4];
      for (int i = 0; i < 4; ++i)
        isum[i] = _mm256_add_epi32(isum[i], _mm256_madd_epi16(_mm256_maddubs_epi16(pw, x[i]), ones));
    }
    const __m256 step = _mm256_set1_ps(wm / kInt8PvLevels);
    for (int i = 0; i < 4; ++i) acc[4 * g + i] = _mm256_fmadd_ps(step, _mm256_cvtepi32_ps(isum[i]), acc[4 * g + i]);
  }
}

// Q8_0 keys of a block transposed for scoring eight keys at a time: each
// 32-bit lane of kt holds four channels of one key, so a head's scores are
// lane-wise integer dot products (maddubs of |q| with k signed like q: no
// int16 saturation, |k|, |q| <= 127; then madd with ones) with no horizontal
// sums; done once per block for every head of the group. kt[(g8 * nb + b) * 8 + c4]: channels 4c4..4c4+3 of
// Q8_0 block b for keys 8 g8 .. 8 g8 + 7; dk[g8 * nb + b]: those keys' scales.
struct Q8Keys {
  __m256i kt[(kMaxRows / 8) * 16 * 8];
  __m256 dk[(kMaxRows / 8) * 16];
};

// Eight rows of 8 dwords -> 8 registers of one dword of every row.
inline void transpose8x8_epi32(const __m256i* r, __m256i* out) {
  const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  out[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  out[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  out[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  out[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  out[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  out[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  out[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  out[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

void prepare_q8_keys(const uint8_t* k, int rows, int64_t kr, int nb, Q8Keys& kq) {
  alignas(32) static const int8_t kZeroRow[32] = {};
  for (int j0 = 0, g8 = 0; j0 < rows; j0 += 8, ++g8)
    for (int b = 0; b < nb; ++b) {
      __m256i r[8];
      alignas(32) float dk[8];
      for (int t = 0; t < 8; ++t) {
        const bool in = j0 + t < rows;
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(k + (j0 + t) * kr) + b;
        r[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in ? blk->qs : kZeroRow));
        dk[t] = in ? half_to_float(blk->d) : 0.0f;
      }
      transpose8x8_epi32(r, &kq.kt[(g8 * nb + b) * 8]);
      kq.dk[g8 * nb + b] = _mm256_load_ps(dk);
    }
}

// One head's scores over a prepared block, as block_scores returns them:
// s[j] = (k_j . q + q . m_b) * scale for j < rows (whole groups of 8
// written), and their max.
inline float q8_scores(const Q8Keys& kq, int rows, int nb, const BlockQ8_0* qb, float qm, float scale, float* s) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 bmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 qmv = _mm256_set1_ps(qm), sv = _mm256_set1_ps(scale);
  for (int j0 = 0, g8 = 0; j0 < rows; j0 += 8, ++g8) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const __m256i* kt = &kq.kt[(g8 * nb + b) * 8];
      __m256i isum = _mm256_setzero_si256();
      for (int c4 = 0; c4 < 8; ++c4) {
        int32_t four;
        std::memcpy(&four, qb[b].qs + 4 * c4, 4);
        const __m256i qv = _mm256_set1_epi32(four);
        const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qv, qv), _mm256_sign_epi8(kt[c4], qv));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, ones));
      }
      const __m256 d = _mm256_mul_ps(kq.dk[g8 * nb + b], _mm256_set1_ps(half_to_float(qb[b].d)));
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc);
    }
    const __m256 sj = _mm256_mul_ps(_mm256_add_ps(acc, qmv), sv);
    _mm256_store_ps(s + j0, sj);
    // Keys past the block's end do not count towards its max.
    const int left = rows - j0;
    if (left >= 8) {
      bmax = _mm256_max_ps(bmax, sj);
    } else {
      for (int t = 0; t < left; ++t) bmax = _mm256_max_ps(bmax, _mm256_set1_ps(s[j0 + t]));
    }
  }
  return hmax_ps(bmax);
}

// sage's values of a block as F32, each row as the row kernel widens it.
void prepare_float(const KvQuantBlocks& kv, const uint8_t* v, int rows, int64_t vr, int d, float* vf) {
  for (int j = 0; j < rows; ++j) {
    float* row = vf + static_cast<size_t>(j) * d;
    if (kv.v_type == DType::F16) {
      const uint16_t* vh = reinterpret_cast<const uint16_t*>(v + j * vr);
      for (int i = 0; i < d / 8; ++i) _mm256_storeu_ps(row + 8 * i, load8(vh + 8 * i));
    } else if (kv.v_type == DType::Q8_0) {
      const auto* vb = reinterpret_cast<const BlockQ8_0*>(v + j * vr);
      for (int i = 0; i < d / 8; ++i) _mm256_storeu_ps(row + 8 * i, q8_0_vec(vb, i));
    } else {
      kv.v_to_float(v + j * vr, row, d);
    }
  }
}

// What a block's weights do with the values.
enum class Pv {
  Sage,   // block-wise softmax, F32 P.V
  Int8,   // block-wise softmax, integer P.V over a Q8_0 V
  Exact,  // llama.cpp's per-key online softmax (std::exp), F32 P.V, an F16 V's sum kept in F16
};

// NV: vectors of 8 per head row when known at compile time (8 or 16), 0 for
// any multiple of 8 (int8: of 32).
template <Pv kPv, int NV>
void group_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                 float* const* out) {
  const int nv = NV ? NV : d / 8, ng = d / 32;
  const size_t qq_bytes = row_bytes(DType::F32, d);  // room for any vec_dot type of d values
  thread_local std::vector<uint8_t> qq;
  thread_local std::vector<float> accs;  // per head, nv vectors of 8 (unaligned: loadu/storeu)
  thread_local std::vector<float> vf;
  thread_local Int8Values pv;
  thread_local Q8Keys kq;
  const bool q8 = kv.k_type == DType::Q8_0;
  qq.resize(qq_bytes * nq);
  accs.resize(static_cast<size_t>(nv) * 8 * nq);
  constexpr bool kInt8 = kPv == Pv::Int8;
  const bool v16 = kv.v_type == DType::F16;  // exact: ggml keeps the V sum in F16 then
  if (!kInt8) vf.resize(static_cast<size_t>(kMaxRows) * d);
  float max[kMaxGroup], sum[kMaxGroup];
  for (int h = 0; h < nq; ++h) {
    kv.q_to_vec_dot(q[h], qq.data() + qq_bytes * h, d);
    std::fill(accs.begin() + static_cast<size_t>(h) * nv * 8, accs.begin() + static_cast<size_t>(h + 1) * nv * 8, 0.0f);
    max[h] = -std::numeric_limits<float>::infinity();
    sum[h] = 0.0f;
  }
  alignas(64) float s[kMaxRows + 8], p[kMaxRows + 8];
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d));
  const int64_t vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const auto [k, v, rows] = block_rows(kv, b, first, n);
    if (first + kv.block_len < n) prefetch_block(kv, b + 1, kr, vr, d);
    if (q8) prepare_q8_keys(k, rows, kr, d / 32, kq);
    if (kInt8)
      prepare_int8(v, rows, vr, ng, pv);
    else
      prepare_float(kv, v, rows, vr, d, vf.data());
    for (int h = 0; h < nq; ++h) {
      __m256 acc[NV ? NV : 64];
      float* saved = &accs[static_cast<size_t>(h) * nv * 8];
      for (int i = 0; i < nv; ++i) acc[i] = _mm256_loadu_ps(saved + 8 * i);
      const float bmax = q8 ? q8_scores(kq, rows, d / 32, reinterpret_cast<const BlockQ8_0*>(qq.data() + qq_bytes * h),
                                        kPv != Pv::Exact && kv.k_mean ? mean_dot8(kv, b, q[h], d) : 0.0f, scale, s)
                            : block_scores(kv, b, k, rows, kr, qq.data() + qq_bytes * h, q[h], d, scale, s);
      if constexpr (kPv == Pv::Exact) {
        for (int j = 0; j < rows; ++j) {
          const auto [ms, vs, rescale] = online_step(s[j], max[h]);
          if (rescale) {
            const __m256 m = _mm256_set1_ps(ms);
            for (int i = 0; i < nv; ++i) acc[i] = v16 ? round_f16(_mm256_mul_ps(acc[i], m)) : _mm256_mul_ps(acc[i], m);
          }
          const __m256 w = _mm256_set1_ps(vs);
          const float* vj = vf.data() + static_cast<size_t>(j) * d;
          for (int i = 0; i < nv; ++i) {
            const __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(vj + 8 * i), w, acc[i]);
            acc[i] = v16 ? round_f16(a) : a;
          }
          sum[h] = sum[h] * ms + vs;
        }
        for (int i = 0; i < nv; ++i) _mm256_storeu_ps(saved + 8 * i, acc[i]);
        continue;
      }
      block_weights(s, rows, bmax, max[h], sum[h], acc, nv, p);
      if (kInt8) {
        for (int j = rows; j % 8 != 0; ++j) p[j] = 0.0f;
        int8_pv(pv, p, rows, ng, acc);
      } else {
        for (int j = 0; j < rows; ++j) {
          const __m256 w = _mm256_set1_ps(p[j]);
          const float* vj = vf.data() + static_cast<size_t>(j) * d;
          for (int i = 0; i < nv; ++i) acc[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 8 * i), acc[i]);
        }
      }
      for (int i = 0; i < nv; ++i) _mm256_storeu_ps(saved + 8 * i, acc[i]);
    }
  }
  alignas(32) float t[8];
  for (int h = 0; h < nq; ++h) {
    const __m256 inv = _mm256_set1_ps(sum[h] == 0.0f ? 0.0f : 1.0f / sum[h]);
    const float* acc = &accs[static_cast<size_t>(h) * nv * 8];
    if (!kInt8) {
      for (int i = 0; i < nv; ++i) _mm256_storeu_ps(out[h] + 8 * i, _mm256_mul_ps(_mm256_loadu_ps(acc + 8 * i), inv));
      continue;
    }
    for (int g = 0; g < ng; ++g)  // int8's channel order back to the row's
      for (int i = 0; i < 4; ++i) {
        _mm256_store_ps(t, _mm256_mul_ps(_mm256_loadu_ps(acc + 8 * (4 * g + i)), inv));
        std::memcpy(out[h] + 32 * g + 4 * i, t, 4 * sizeof(float));
        std::memcpy(out[h] + 32 * g + 16 + 4 * i, t + 4, 4 * sizeof(float));
      }
  }
}

template <Pv kPv>
bool group_runs(const KvQuantBlocks& kv, int d, int nq) {
  return d % (kPv == Pv::Int8 ? 32 : 8) == 0 && d <= 512 && kv.block_len <= kMaxRows && nq <= kMaxGroup &&
         (kPv != Pv::Int8 || kv.v_type == DType::Q8_0) && (kPv != Pv::Exact || kv.k_type == DType::Q8_0);
}

template <Pv kPv>
void group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale, float* const* out) {
  if (d == 64) return group_quant<kPv, 8>(kv, n, d, q, nq, scale, out);
  if (d == 128) return group_quant<kPv, 16>(kv, n, d, q, nq, scale, out);
  group_quant<kPv, 0>(kv, n, d, q, nq, scale, out);
}

}  // namespace

void attend_int8_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  if (!group_runs<Pv::Int8>(kv, d, 1)) return ref::attend_int8_quant(kv, n, d, q, scale, out);
  group<Pv::Int8>(kv, n, d, &q, 1, scale, &out);
}

void attend_int8_quant_group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                             float* const* out) {
  if (!group_runs<Pv::Int8>(kv, d, nq)) {
    for (int h = 0; h < nq; ++h) ref::attend_int8_quant(kv, n, d, q[h], scale, out[h]);
    return;
  }
  group<Pv::Int8>(kv, n, d, q, nq, scale, out);
}

void attend_sage_quant_group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                             float* const* out) {
  if (!group_runs<Pv::Sage>(kv, d, nq)) {
    for (int h = 0; h < nq; ++h) attend_sage_quant(kv, n, d, q[h], scale, out[h]);
    return;
  }
  group<Pv::Sage>(kv, n, d, q, nq, scale, out);
}

void attend_quant_group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                        float* const* out) {
  if (!group_runs<Pv::Exact>(kv, d, nq)) {
    for (int h = 0; h < nq; ++h) attend_quant(kv, n, d, q[h], scale, out[h]);
    return;
  }
  group<Pv::Exact>(kv, n, d, q, nq, scale, out);
}

}  // namespace kestrel::kernels::avx2
