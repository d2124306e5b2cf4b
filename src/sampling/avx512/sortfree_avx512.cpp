// AVX-512 passes of the sorting-free sampler: 16 floats per step, masked loads
// for tails, compress for in-order compaction, double accumulators for sums (a
// 150k-entry row summed in float would lose ~1e-4 of relative precision).
#include <immintrin.h>

#include <algorithm>

// GCC 12 reports the _mm512_undefined_*() placeholders inside its own
// intrinsic headers as uninitialized once inlined; the warnings are false.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "sampling/sortfree_kernels.h"

namespace kestrel::sampling::avx512 {
namespace {

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}

// Not a namespace-scope constant: its initializer would run AVX-512 code at
// start-up on every CPU.
inline __m512i iota16() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }

// Lanes whose (l, id) is above k; `valid` masks the tail.
inline __mmask16 above_mask(__m512 l, __m512i id, __m512 kl, __m512i kid, __mmask16 valid) {
  const __mmask16 gt = _mm512_mask_cmp_ps_mask(valid, l, kl, _CMP_GT_OQ);
  const __mmask16 eq = _mm512_mask_cmp_ps_mask(valid, l, kl, _CMP_EQ_OQ);
  return gt | _mm512_mask_cmplt_epi32_mask(eq, id, kid);
}

// Adds the 16 floats of x (zero where masked off) to two double accumulators.
inline void add_to_double(__m512 x, __m512d& lo, __m512d& hi) {
  lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
  hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))));
}

// exp(x) for x <= 0 (x = -inf gives 0). n = round(x / ln2), r = x - n ln2 with
// ln2 split in two so that r is exact to float precision, exp(r) by its Taylor
// series to degree 7 (|r| <= ln2/2: truncation 5e-9, under a float ulp), and
// scalef for the 2^n, which rounds into the subnormal range like expf does.
inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-150.0f));  // below -104 exp is 0 in float anyway
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147182464599609375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-1.904654299957768e-09f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace

ScanResult scan_max(const float* x, int64_t n, float* block_max) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 nan = 0;
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0; b < n_blocks(n); ++b) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    // Four independent max chains: one chain of 16 dependent maxes per block
    // would cost 16 x 4 cycles of latency, more than loading the block.
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t i = b * kBlock;
    for (; i + 64 <= end; i += 64) {
      const __m512 a = _mm512_loadu_ps(x + i), c = _mm512_loadu_ps(x + i + 16);
      const __m512 d = _mm512_loadu_ps(x + i + 32), e = _mm512_loadu_ps(x + i + 48);
      // Unordered compares are true where either operand is NaN.
      nan |= _mm512_cmp_ps_mask(a, c, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(d, e, _CMP_UNORD_Q);
      // max_ps returns the second operand when one is NaN: keep m in that slot.
      m0 = _mm512_max_ps(a, m0);
      m1 = _mm512_max_ps(c, m1);
      m2 = _mm512_max_ps(d, m2);
      m3 = _mm512_max_ps(e, m3);
    }
    for (; i < end; i += 16) {
      const __mmask16 t = tail_mask(end - i);
      const __m512 a = _mm512_mask_loadu_ps(ninf, t, x + i);
      nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
      m0 = _mm512_max_ps(a, m0);
    }
    const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    block_max[b] = m;
    best = std::max(best, m);
  }
  return {best, nan != 0};
}

int64_t compact_ge(const float* x, int64_t n, float t, const float* block_max, int32_t* ids, float* vals) {
  const __m512 vt = _mm512_set1_ps(t);
  const __m512i iota = iota16();
  int64_t out = 0;
  for (int64_t b = 0; b < n_blocks(n); ++b) {
    if (!(block_max[b] >= t)) continue;
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; i += 16) {
      const __mmask16 valid = tail_mask(end - i);
      const __m512 a = _mm512_maskz_loadu_ps(valid, x + i);
      const __mmask16 m = _mm512_mask_cmp_ps_mask(valid, a, vt, _CMP_GE_OQ);
      if (!m) continue;
      const int cnt = __builtin_popcount(m);
      const __mmask16 store = tail_mask(cnt);
      const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(i)));
      _mm512_mask_storeu_ps(vals + out, store, _mm512_maskz_compress_ps(m, a));
      _mm512_mask_storeu_epi32(ids + out, store, _mm512_maskz_compress_epi32(m, idx));
      out += cnt;
    }
  }
  return out;
}

void count_split(const float* x, int64_t n, float t, int64_t* gt, int64_t* eq) {
  const __m512 vt = _mm512_set1_ps(t);
  int64_t g = 0, e = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 valid = tail_mask(n - i);
    const __m512 a = _mm512_maskz_loadu_ps(valid, x + i);
    g += __builtin_popcount(_mm512_mask_cmp_ps_mask(valid, a, vt, _CMP_GT_OQ));
    e += __builtin_popcount(_mm512_mask_cmp_ps_mask(valid, a, vt, _CMP_EQ_OQ));
  }
  *gt = g;
  *eq = e;
}

int64_t filter(float* l, int32_t* id, float* a, float* b, int64_t n, Key k, bool keep_above) {
  const __m512 kl = _mm512_set1_ps(k.logit);
  const __m512i kid = _mm512_set1_epi32(k.id);
  int64_t out = 0;
  // Writes go to [out, out + 16) with out <= i: never past what was read.
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 valid = tail_mask(n - i);
    const __m512 vl = _mm512_maskz_loadu_ps(valid, l + i);
    const __m512i vid = _mm512_maskz_loadu_epi32(valid, id + i);
    __mmask16 m = above_mask(vl, vid, kl, kid, valid);
    if (!keep_above) m = static_cast<__mmask16>(~m & valid);
    if (!m) continue;
    const int cnt = __builtin_popcount(m);
    const __mmask16 store = tail_mask(cnt);
    const __m512 va = a ? _mm512_maskz_loadu_ps(valid, a + i) : _mm512_setzero_ps();
    const __m512 vb = b ? _mm512_maskz_loadu_ps(valid, b + i) : _mm512_setzero_ps();
    _mm512_mask_storeu_ps(l + out, store, _mm512_maskz_compress_ps(m, vl));
    _mm512_mask_storeu_epi32(id + out, store, _mm512_maskz_compress_epi32(m, vid));
    if (a) _mm512_mask_storeu_ps(a + out, store, _mm512_maskz_compress_ps(m, va));
    if (b) _mm512_mask_storeu_ps(b + out, store, _mm512_maskz_compress_ps(m, vb));
    out += cnt;
  }
  return out;
}

double exp_weights(const float* x, int64_t n, float shift, float temp, float* out) {
  const __m512 vs = _mm512_set1_ps(shift), vt = _mm512_set1_ps(temp);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 valid = tail_mask(n - i);
    const __m512 a = _mm512_mask_loadu_ps(vs, valid, x + i);  // masked lanes: exp(0), not stored or summed
    const __m512 e = _mm512_maskz_mov_ps(valid, exp_nonpositive(_mm512_div_ps(_mm512_sub_ps(a, vs), vt)));
    _mm512_mask_storeu_ps(out + i, valid, e);
    add_to_double(e, lo, hi);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

void normalize(float* w, int64_t n, double z) {
  const __m512d vz = _mm512_set1_pd(z);
  for (int64_t i = 0; i < n; i += 8) {
    const __mmask8 valid = static_cast<__mmask8>(n - i >= 8 ? 0xFF : (1u << (n - i)) - 1);
    const __m512d d = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(valid, w + i));
    _mm256_mask_storeu_ps(w + i, valid, _mm512_cvtpd_ps(_mm512_div_pd(d, vz)));
  }
}

double chunk_sums(const float* l, const int32_t* id, const float* v, int64_t n, Key low, double* sums) {
  const __m512 kl = _mm512_set1_ps(low.logit);
  const __m512i kid = _mm512_set1_epi32(low.id);
  double total = 0.0;
  for (int64_t c = 0; c < n_chunks(n); ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t i = c * kChunk; i < end; i += 16) {
      const __mmask16 valid = tail_mask(end - i);
      const __mmask16 m = above_mask(_mm512_maskz_loadu_ps(valid, l + i), _mm512_maskz_loadu_epi32(valid, id + i), kl, kid, valid);
      add_to_double(_mm512_maskz_loadu_ps(m, v + i), lo, hi);
    }
    sums[c] = _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
    total += sums[c];
  }
  return total;
}

AboveSums sums_above(const float* l, const int32_t* id, const float* p, int64_t n, Key k0, Key k1) {
  const __m512 kl0 = _mm512_set1_ps(k0.logit), kl1 = _mm512_set1_ps(k1.logit);
  const __m512i kid0 = _mm512_set1_epi32(k0.id), kid1 = _mm512_set1_epi32(k1.id);
  __m512d lo0 = _mm512_setzero_pd(), hi0 = _mm512_setzero_pd(), lo1 = _mm512_setzero_pd(), hi1 = _mm512_setzero_pd();
  int64_t c0 = 0, c1 = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 valid = tail_mask(n - i);
    const __m512 vl = _mm512_maskz_loadu_ps(valid, l + i);
    const __m512i vid = _mm512_maskz_loadu_epi32(valid, id + i);
    const __m512 vp = _mm512_maskz_loadu_ps(valid, p + i);
    const __mmask16 m0 = above_mask(vl, vid, kl0, kid0, valid), m1 = above_mask(vl, vid, kl1, kid1, valid);
    add_to_double(_mm512_maskz_mov_ps(m0, vp), lo0, hi0);
    add_to_double(_mm512_maskz_mov_ps(m1, vp), lo1, hi1);
    c0 += __builtin_popcount(m0);
    c1 += __builtin_popcount(m1);
  }
  return {{_mm512_reduce_add_pd(_mm512_add_pd(lo0, hi0)), _mm512_reduce_add_pd(_mm512_add_pd(lo1, hi1))}, {c0, c1}};
}

}  // namespace kestrel::sampling::avx512
