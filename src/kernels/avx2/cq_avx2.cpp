// AVX2 CQ attention kernels (kernels/cq_kernels.h): 8 codes per register for
// the codebook passes, four keys at a time for the lookups, in the summation
// orders of the scalar twins (kernels/ref/cq_ref.cpp), so both give the same
// bits. Fewer than 8 codes (bits < 3) go to the twin. F16 centroids are
// widened by F16C as they are loaded (exact: the twins' values).
#include <algorithm>
#include <cmath>

#include "kernels/avx2/avx2-inl.h"
#include "kernels/cq_kernels.h"

namespace kestrel::kernels::avx2 {
namespace {

__m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// 8 codes per register, the twin's fma chain per code; each lane keeps its
// first smallest distance (strict <), and the lanes meet at the end on the
// smallest distance, then the lowest code: the twin's choice.
template <class Centroid>
void encode(const float* x, const Centroid* centroids, int head_dim, int c, int n_codes, uint8_t* codes) {
  const int n_groups = head_dim / c;
  for (int g = 0; g < n_groups; ++g) {
    const Centroid* cg = centroids + static_cast<int64_t>(g) * c * n_codes;
    __m256 best_d = _mm256_set1_ps(INFINITY);
    __m256i best = _mm256_setzero_si256();
    __m256i code = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int k = 0; k < n_codes; k += 8) {
      __m256 d = _mm256_setzero_ps();
      for (int i = 0; i < c; ++i) {
        const __m256 e = _mm256_sub_ps(_mm256_set1_ps(x[g * c + i]), load8(cg + i * n_codes + k));
        d = _mm256_fmadd_ps(e, e, d);
      }
      const __m256 less = _mm256_cmp_ps(d, best_d, _CMP_LT_OQ);
      best_d = _mm256_blendv_ps(best_d, d, less);
      best = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(best), _mm256_castsi256_ps(code), less));
      code = _mm256_add_epi32(code, _mm256_set1_epi32(8));
    }
    alignas(32) float dl[8];
    alignas(32) int32_t cl[8];
    _mm256_store_ps(dl, best_d);
    _mm256_store_si256(reinterpret_cast<__m256i*>(cl), best);
    int pick = 0;
    for (int l = 1; l < 8; ++l)
      if (dl[l] < dl[pick] || (dl[l] == dl[pick] && cl[l] < cl[pick])) pick = l;
    codes[g] = static_cast<uint8_t>(cl[pick]);
  }
}

}  // namespace

void cq_encode(const float* x, const uint16_t* centroids, int head_dim, int c, int n_codes, uint8_t* codes) {
  if (n_codes % 8 != 0) return ref::cq_encode(x, centroids, head_dim, c, n_codes, codes);
  encode(x, centroids, head_dim, c, n_codes, codes);
}

void cq_encode_f32(const float* x, const float* centroids, int head_dim, int c, int n_codes, uint8_t* codes) {
  if (n_codes % 8 != 0) return ref::cq_encode_f32(x, centroids, head_dim, c, n_codes, codes);
  encode(x, centroids, head_dim, c, n_codes, codes);
}

void cq_score_table(const float* q, const uint16_t* centroids, int head_dim, int c, int n_codes, float* table) {
  if (n_codes % 8 != 0) return ref::cq_score_table(q, centroids, head_dim, c, n_codes, table);
  const int n_groups = head_dim / c;
  for (int g = 0; g < n_groups; ++g) {
    const float* qg = q + g * c;
    const uint16_t* cg = centroids + static_cast<int64_t>(g) * c * n_codes;
    float* tg = table + static_cast<int64_t>(g) * n_codes;
    for (int code = 0; code < n_codes; code += 8) {
      __m256 t = _mm256_mul_ps(_mm256_set1_ps(qg[0]), load8(cg + code));
      for (int i = 1; i < c; ++i) t = _mm256_fmadd_ps(_mm256_set1_ps(qg[i]), load8(cg + i * n_codes + code), t);
      _mm256_storeu_ps(tg + code, t);
    }
  }
}

// Four keys at a time in scalar loads, four independent addition chains (each
// key's in group order, as the twin). Not gathers: on Zen 3, one 8-key
// vgatherdps per group took 96 us for 8192 keys x 16 groups, these lookups 36
// us, the twin's one key at a time 72 us (the load ports are the limit, and a
// gather costs more of them than the scalar loads it replaces).
void cq_scores(const float* table, const uint8_t* codes, int64_t n, int n_groups, int n_codes, float* scores) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const uint8_t* r0 = codes + j * n_groups;
    const uint8_t *r1 = r0 + n_groups, *r2 = r1 + n_groups, *r3 = r2 + n_groups;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (int g = 0; g < n_groups; ++g) {
      const float* tg = table + static_cast<int64_t>(g) * n_codes;
      s0 += tg[r0[g]];
      s1 += tg[r1[g]];
      s2 += tg[r2[g]];
      s3 += tg[r3[g]];
    }
    scores[j] = s0;
    scores[j + 1] = s1;
    scores[j + 2] = s2;
    scores[j + 3] = s3;
  }
  ref::cq_scores(table, codes + j * n_groups, n - j, n_groups, n_codes, scores + j);
}

// Up to 8 channels of a group side by side: independent fma chains over the
// codes, each channel's chain in code order (a group of more channels, as a
// residual stage's block is, takes them 8 at a time).
void cq_buckets_out(const float* buckets, const uint16_t* centroids, int head_dim, int c, int n_codes, float* out) {
  if (n_codes % 8 != 0) return ref::cq_buckets_out(buckets, centroids, head_dim, c, n_codes, out);
  const int n_groups = head_dim / c;
  for (int g = 0; g < n_groups; ++g) {
    const float* bg = buckets + static_cast<int64_t>(g) * n_codes;
    const uint16_t* cg = centroids + static_cast<int64_t>(g) * c * n_codes;
    for (int i0 = 0; i0 < c; i0 += 8) {
      const int m = std::min(8, c - i0);
      __m256 acc[8];
      for (int i = 0; i < m; ++i) acc[i] = _mm256_setzero_ps();
      for (int code = 0; code < n_codes; code += 8) {
        const __m256 b = _mm256_loadu_ps(bg + code);
        for (int i = 0; i < m; ++i) acc[i] = _mm256_fmadd_ps(b, load8(cg + (i0 + i) * n_codes + code), acc[i]);
      }
      for (int i = 0; i < m; ++i) out[g * c + i0 + i] = hsum_ps(acc[i]);
    }
  }
}

float cq_copy_dot(const float* q, const uint16_t* k, int head_dim) {
  if (head_dim % 8 != 0) return ref::cq_copy_dot(q, k, head_dim);
  __m256 acc = _mm256_setzero_ps();
  for (int c = 0; c < head_dim; c += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + c),
                          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + c))), acc);
  return hsum_ps(acc);
}

void cq_copy_axpy(float p, const uint16_t* v, int head_dim, float* acc) {
  if (head_dim % 8 != 0) return ref::cq_copy_axpy(p, v, head_dim, acc);
  const __m256 pv = _mm256_set1_ps(p);
  for (int c = 0; c < head_dim; c += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + c)));
    _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(pv, x, _mm256_loadu_ps(acc + c)));
  }
}

}  // namespace kestrel::kernels::avx2
