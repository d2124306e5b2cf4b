// Scalar twins of the CQ attention kernels (kernels/cq_kernels.h), in the
// summation orders the AVX2 versions keep. Centroids are F16 (the codebooks'
// storage) except for encode_f32 (k-means); widening is exact, as F16C's.
#include <cmath>

#include "core/fp16.h"
#include "kernels/cq_kernels.h"

namespace kestrel::kernels::ref {
namespace {

// The fold of hsum_ps (kernels/avx2/avx2-inl.h).
float fold_lanes(const float (&lane)[8]) {
  const float a0 = lane[0] + lane[4], a1 = lane[1] + lane[5], a2 = lane[2] + lane[6], a3 = lane[3] + lane[7];
  return (a0 + a2) + (a1 + a3);
}

float widen(float x) { return x; }
float widen(uint16_t h) { return fp16_to_f32(h); }

template <class Centroid>
void encode(const float* x, const Centroid* centroids, int head_dim, int c, int n_codes, uint8_t* codes) {
  const int n_groups = head_dim / c;
  for (int g = 0; g < n_groups; ++g) {
    const Centroid* cg = centroids + static_cast<int64_t>(g) * c * n_codes;
    int best = 0;
    float best_d = INFINITY;
    for (int code = 0; code < n_codes; ++code) {
      float d = 0.0f;
      for (int i = 0; i < c; ++i) {
        const float e = x[g * c + i] - widen(cg[i * n_codes + code]);
        d = std::fma(e, e, d);
      }
      if (d < best_d) {
        best_d = d;
        best = code;
      }
    }
    codes[g] = static_cast<uint8_t>(best);
  }
}

}  // namespace

void cq_encode(const float* x, const uint16_t* centroids, int head_dim, int c, int n_codes, uint8_t* codes) {
  encode(x, centroids, head_dim, c, n_codes, codes);
}

void cq_encode_f32(const float* x, const float* centroids, int head_dim, int c, int n_codes, uint8_t* codes) {
  encode(x, centroids, head_dim, c, n_codes, codes);
}

void cq_score_table(const float* q, const uint16_t* centroids, int head_dim, int c, int n_codes, float* table) {
  const int n_groups = head_dim / c;
  for (int g = 0; g < n_groups; ++g) {
    const float* qg = q + g * c;
    const uint16_t* cg = centroids + static_cast<int64_t>(g) * c * n_codes;
    float* tg = table + static_cast<int64_t>(g) * n_codes;
    for (int code = 0; code < n_codes; ++code) {
      float t = qg[0] * widen(cg[code]);
      for (int i = 1; i < c; ++i) t = std::fma(qg[i], widen(cg[i * n_codes + code]), t);
      tg[code] = t;
    }
  }
}

void cq_scores(const float* table, const uint8_t* codes, int64_t n, int n_groups, int n_codes, float* scores) {
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t* row = codes + j * n_groups;
    float s = 0.0f;
    for (int g = 0; g < n_groups; ++g) s += table[g * n_codes + row[g]];
    scores[j] = s;
  }
}

void cq_add_buckets(const float* p, const uint8_t* codes, int64_t n, int n_groups, int n_codes, float* buckets) {
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t* row = codes + j * n_groups;
    for (int g = 0; g < n_groups; ++g) buckets[g * n_codes + row[g]] += p[j];
  }
}

void cq_buckets_out(const float* buckets, const uint16_t* centroids, int head_dim, int c, int n_codes, float* out) {
  const int n_groups = head_dim / c;
  for (int g = 0; g < n_groups; ++g) {
    const float* bg = buckets + static_cast<int64_t>(g) * n_codes;
    for (int i = 0; i < c; ++i) {
      const uint16_t* ci = centroids + (static_cast<int64_t>(g) * c + i) * n_codes;
      float lane[8] = {};
      for (int code = 0; code < n_codes; ++code) lane[code % 8] = std::fma(bg[code], widen(ci[code]), lane[code % 8]);
      out[g * c + i] = fold_lanes(lane);
    }
  }
}

float cq_copy_dot(const float* q, const uint16_t* k, int head_dim) {
  float lane[8] = {};
  for (int c = 0; c < head_dim; ++c) lane[c % 8] = std::fma(q[c], fp16_to_f32(k[c]), lane[c % 8]);
  return fold_lanes(lane);
}

void cq_copy_axpy(float p, const uint16_t* v, int head_dim, float* acc) {
  for (int c = 0; c < head_dim; ++c) acc[c] = std::fma(p, fp16_to_f32(v[c]), acc[c]);
}

}  // namespace kestrel::kernels::ref
