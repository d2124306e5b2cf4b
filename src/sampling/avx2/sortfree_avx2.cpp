// AVX2 passes of the sorting-free sampler: 8 floats per step. AVX2 has no
// compress instruction: in-order compaction permutes the kept lanes to the
// front with a 256-entry index table, then stores only those lanes.
#include <immintrin.h>

#include <algorithm>
#include <array>

#include "sampling/sortfree_kernels.h"

namespace kestrel::sampling::avx2 {
namespace {

// kCompress[m]: the lanes set in m, lowest first, then padding.
constexpr std::array<std::array<int32_t, 8>, 256> make_compress_table() {
  std::array<std::array<int32_t, 8>, 256> t{};
  for (int m = 0; m < 256; ++m) {
    int k = 0;
    for (int lane = 0; lane < 8; ++lane)
      if (m & (1 << lane)) t[m][k++] = lane;
    for (; k < 8; ++k) t[m][k] = 0;
  }
  return t;
}
constexpr auto kCompress = make_compress_table();

inline __m256i iota8() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }

// All-ones lanes for lane < left.
inline __m256i lanes_below(int64_t left) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(std::min<int64_t>(left, 8))), iota8());
}

inline int bits(__m256 m) { return _mm256_movemask_ps(m); }

// The kept lanes of x moved to the front; store the first popcount(m) of them.
inline __m256 compress(int m, __m256 x) {
  const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kCompress[static_cast<size_t>(m)].data()));
  return _mm256_permutevar8x32_ps(x, idx);
}
inline __m256i compress(int m, __m256i x) {
  const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kCompress[static_cast<size_t>(m)].data()));
  return _mm256_permutevar8x32_epi32(x, idx);
}

inline __m256 above_mask(__m256 l, __m256i id, __m256 kl, __m256i kid) {
  const __m256 gt = _mm256_cmp_ps(l, kl, _CMP_GT_OQ);
  const __m256 eq = _mm256_cmp_ps(l, kl, _CMP_EQ_OQ);
  const __m256 lt_id = _mm256_castsi256_ps(_mm256_cmpgt_epi32(kid, id));
  return _mm256_or_ps(gt, _mm256_and_ps(eq, lt_id));
}

inline void add_to_double(__m256 x, __m256d& lo, __m256d& hi) {
  lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
  hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
}

inline double hsum(__m256d x) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

inline float hmax(__m256 x) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// 2^n for integer-valued n in [-217, 0] (x >= -150), as two factors that are each normal.
inline __m256 pow2_split(__m256 n, __m256* second) {
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);  // floor(n / 2) >= -75
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  *second = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
}

// exp(x) for x <= 0; the same reduction and polynomial as the AVX-512 version.
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-150.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147182464599609375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-1.904654299957768e-09f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256 s2;
  const __m256 s1 = pow2_split(n, &s2);
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

}  // namespace

ScanResult scan_max(const float* x, int64_t n, float* block_max) {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int nan = 0;
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0; b < n_blocks(n); ++b) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    // Four independent max chains (see the AVX-512 version).
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t i = b * kBlock;
    for (; i + 32 <= end; i += 32) {
      const __m256 a = _mm256_loadu_ps(x + i), c = _mm256_loadu_ps(x + i + 8);
      const __m256 d = _mm256_loadu_ps(x + i + 16), e = _mm256_loadu_ps(x + i + 24);
      nan |= bits(_mm256_or_ps(_mm256_cmp_ps(a, c, _CMP_UNORD_Q), _mm256_cmp_ps(d, e, _CMP_UNORD_Q)));
      m0 = _mm256_max_ps(a, m0);  // a NaN in a leaves m0 (the second operand)
      m1 = _mm256_max_ps(c, m1);
      m2 = _mm256_max_ps(d, m2);
      m3 = _mm256_max_ps(e, m3);
    }
    float m = hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    for (; i < end; ++i) {
      if (x[i] != x[i]) nan = 1;
      else if (x[i] > m) m = x[i];
    }
    block_max[b] = m;
    best = std::max(best, m);
  }
  return {best, nan != 0};
}

int64_t compact_ge(const float* x, int64_t n, float t, const float* block_max, int32_t* ids, float* vals) {
  const __m256 vt = _mm256_set1_ps(t);
  int64_t out = 0;
  for (int64_t b = 0; b < n_blocks(n); ++b) {
    if (!(block_max[b] >= t)) continue;
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; i += 8) {
      const __m256i valid = lanes_below(end - i);
      const __m256 a = _mm256_maskload_ps(x + i, valid);
      const int m = bits(_mm256_and_ps(_mm256_cmp_ps(a, vt, _CMP_GE_OQ), _mm256_castsi256_ps(valid)));
      if (!m) continue;
      const int cnt = __builtin_popcount(static_cast<unsigned>(m));
      const __m256i store = lanes_below(cnt);
      const __m256i idx = _mm256_add_epi32(iota8(), _mm256_set1_epi32(static_cast<int32_t>(i)));
      _mm256_maskstore_ps(vals + out, store, compress(m, a));
      _mm256_maskstore_epi32(ids + out, store, compress(m, idx));
      out += cnt;
    }
  }
  return out;
}

void count_split(const float* x, int64_t n, float t, int64_t* gt, int64_t* eq) {
  const __m256 vt = _mm256_set1_ps(t);
  int64_t g = 0, e = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    g += __builtin_popcount(static_cast<unsigned>(bits(_mm256_cmp_ps(a, vt, _CMP_GT_OQ))));
    e += __builtin_popcount(static_cast<unsigned>(bits(_mm256_cmp_ps(a, vt, _CMP_EQ_OQ))));
  }
  for (; i < n; ++i) {
    g += x[i] > t;
    e += x[i] == t;
  }
  *gt = g;
  *eq = e;
}

int64_t filter(float* l, int32_t* id, float* a, float* b, int64_t n, Key k, bool keep_above) {
  const __m256 kl = _mm256_set1_ps(k.logit);
  const __m256i kid = _mm256_set1_epi32(k.id);
  int64_t out = 0;
  // Writes go to [out, out + 8) with out <= i: never past what was read.
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i valid = lanes_below(n - i);
    const __m256 vl = _mm256_maskload_ps(l + i, valid);
    const __m256i vid = _mm256_maskload_epi32(id + i, valid);
    __m256 keep = above_mask(vl, vid, kl, kid);
    if (!keep_above) keep = _mm256_andnot_ps(keep, _mm256_castsi256_ps(valid));
    else keep = _mm256_and_ps(keep, _mm256_castsi256_ps(valid));
    const int m = bits(keep);
    if (!m) continue;
    const int cnt = __builtin_popcount(static_cast<unsigned>(m));
    const __m256i store = lanes_below(cnt);
    const __m256 va = a ? _mm256_maskload_ps(a + i, valid) : _mm256_setzero_ps();
    const __m256 vb = b ? _mm256_maskload_ps(b + i, valid) : _mm256_setzero_ps();
    _mm256_maskstore_ps(l + out, store, compress(m, vl));
    _mm256_maskstore_epi32(id + out, store, compress(m, vid));
    if (a) _mm256_maskstore_ps(a + out, store, compress(m, va));
    if (b) _mm256_maskstore_ps(b + out, store, compress(m, vb));
    out += cnt;
  }
  return out;
}

double exp_weights(const float* x, int64_t n, float shift, float temp, float* out) {
  const __m256 vs = _mm256_set1_ps(shift), vt = _mm256_set1_ps(temp);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i valid = lanes_below(n - i);
    // Masked-off lanes load 0 and may compute anything: they are zeroed before use.
    const __m256 a = _mm256_maskload_ps(x + i, valid);
    const __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_div_ps(_mm256_sub_ps(_mm256_min_ps(a, vs), vs), vt)),
                                   _mm256_castsi256_ps(valid));
    _mm256_maskstore_ps(out + i, valid, e);
    add_to_double(e, lo, hi);
  }
  return hsum(_mm256_add_pd(lo, hi));
}

void normalize(float* w, int64_t n, double z) {
  const __m256d vz = _mm256_set1_pd(z);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    _mm_storeu_ps(w + i, _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm_loadu_ps(w + i)), vz)));
  for (; i < n; ++i) w[i] = static_cast<float>(w[i] / z);
}

double chunk_sums(const float* l, const int32_t* id, const float* v, int64_t n, Key low, double* sums) {
  const __m256 kl = _mm256_set1_ps(low.logit);
  const __m256i kid = _mm256_set1_epi32(low.id);
  double total = 0.0;
  for (int64_t c = 0; c < n_chunks(n); ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (int64_t i = c * kChunk; i < end; i += 8) {
      const __m256i valid = lanes_below(end - i);
      const __m256 m = _mm256_and_ps(
          above_mask(_mm256_maskload_ps(l + i, valid), _mm256_maskload_epi32(id + i, valid), kl, kid),
          _mm256_castsi256_ps(valid));
      add_to_double(_mm256_and_ps(m, _mm256_maskload_ps(v + i, valid)), lo, hi);
    }
    sums[c] = hsum(_mm256_add_pd(lo, hi));
    total += sums[c];
  }
  return total;
}

AboveSums sums_above(const float* l, const int32_t* id, const float* p, int64_t n, Key k0, Key k1) {
  const __m256 kl0 = _mm256_set1_ps(k0.logit), kl1 = _mm256_set1_ps(k1.logit);
  const __m256i kid0 = _mm256_set1_epi32(k0.id), kid1 = _mm256_set1_epi32(k1.id);
  __m256d lo0 = _mm256_setzero_pd(), hi0 = _mm256_setzero_pd(), lo1 = _mm256_setzero_pd(), hi1 = _mm256_setzero_pd();
  int64_t c0 = 0, c1 = 0;
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i valid = lanes_below(n - i);
    const __m256 vl = _mm256_maskload_ps(l + i, valid);
    const __m256i vid = _mm256_maskload_epi32(id + i, valid);
    const __m256 vp = _mm256_maskload_ps(p + i, valid);
    const __m256 vm = _mm256_castsi256_ps(valid);
    const __m256 m0 = _mm256_and_ps(above_mask(vl, vid, kl0, kid0), vm);
    const __m256 m1 = _mm256_and_ps(above_mask(vl, vid, kl1, kid1), vm);
    add_to_double(_mm256_and_ps(m0, vp), lo0, hi0);
    add_to_double(_mm256_and_ps(m1, vp), lo1, hi1);
    c0 += __builtin_popcount(static_cast<unsigned>(bits(m0)));
    c1 += __builtin_popcount(static_cast<unsigned>(bits(m1)));
  }
  return {{hsum(_mm256_add_pd(lo0, hi0)), hsum(_mm256_add_pd(lo1, hi1))}, {c0, c1}};
}

}  // namespace kestrel::sampling::avx2
