#pragma once
// Attention over a coupled-quantized KV cache (CQ, PAPERS.md card 8; issue 14).
// A head's channels are cut into groups of c; a key or value row is stored as
// one byte code per group, and each (layer, kv head, K or V, group) has a
// codebook of n_codes centroids of c values (kv/cq_codebook.h learns them).
//
// Centroids are planar, [groups][c][n_codes]: for one group and one channel the
// n_codes values are contiguous, so every kernel below runs 8 codes per AVX2
// register with plain loads. Rows of codes are [n][groups] bytes.
//
// Centroids are F16 (IEEE half bits): a model's codebooks are held once per
// cache, and in F32 they were as large as a cq2 cache's codes of 8k tokens
// (issue 14). Every kernel widens them exactly (F16C, or fp16_to_f32 in the
// twins), so F16 changes which values the codebook holds, not the arithmetic:
// the sums below run in F32 as before. Only k-means, while it learns the
// centroids, searches F32 ones (encode_f32).
//
//   score table  T[g][code] = sum_i q[g c + i] * C_K[g][i][code]   (once per query)
//   scores       s_j = sum_g T[g][codes_j[g]]                      (one lookup per group and key)
//   buckets      B[g][code] += p_j for every key j whose group g has that code
//   buckets out  out[g c + i] = sum_code B[g][code] * C_V[g][i][code]
// So q.k costs groups lookups instead of head_dim products, and P.V costs groups
// additions per key plus one pass over the codebook. The keys must be stored
// after RoPE: the table is built from the rotated query.
//
// Summation orders (every Isa gives the same bits): T starts from q_0 C_0 and
// adds channel i by fma, in order; s_j adds the groups in order from 0; out sums
// the codes in 8 lanes (code k in lane k % 8, fma), folded as an AVX2 register
// is (lanes k and k + 4, then 0+2 and 1+3, then the two). Buckets add the keys
// in order. Scalar twins in kernels/ref/cq_ref.cpp, AVX2 in kernels/avx2/cq_avx2.cpp.
#include <cstdint>

#include "core/fp16.h"
#include "platform/cpu.h"

namespace kestrel::kernels {

// q: [head_dim], already scaled; centroids: [head_dim / c][c][n_codes] F16; table: [head_dim / c][n_codes].
using CqScoreTableFn = void (*)(const float* q, const uint16_t* centroids, int head_dim, int c, int n_codes,
                                float* table);
// table: [n_groups][n_codes]; codes: [n][n_groups]; scores: [n].
using CqScoresFn = void (*)(const float* table, const uint8_t* codes, int64_t n, int n_groups, int n_codes,
                            float* scores);
// p: [n]; codes: [n][n_groups]; buckets: [n_groups][n_codes], added to (the caller zeroes them).
using CqBucketsFn = void (*)(const float* p, const uint8_t* codes, int64_t n, int n_groups, int n_codes,
                             float* buckets);
// buckets: [head_dim / c][n_codes]; centroids: [head_dim / c][c][n_codes] F16; out: [head_dim], written.
using CqBucketsOutFn = void (*)(const float* buckets, const uint16_t* centroids, int head_dim, int c, int n_codes,
                                float* out);

// x: [head_dim]; centroids: [head_dim / c][c][n_codes] F16; codes: [head_dim / c], the
// nearest centroid of each group in squared distance (ties: the lowest code).
// Distances sum channel i's (x_i - C_i)^2 by fma, in channel order.
using CqEncodeFn = void (*)(const float* x, const uint16_t* centroids, int head_dim, int c, int n_codes,
                            uint8_t* codes);
// The same search over F32 centroids: k-means' assignment step (kv/cq_kmeans.h).
using CqEncodeF32Fn = void (*)(const float* x, const float* centroids, int head_dim, int c, int n_codes,
                               uint8_t* codes);

// codes: [head_dim / c] -> out: [head_dim], each group's centroid widened (no
// arithmetic, so one version serves every Isa). With residual stages
// (kv/cq_codebook.h: centroids [head_dim / c][c stages][n_codes], group g is
// stage g % stages of the block of c stages channels g / stages), a block is
// the sum of its stages' centroids, added in stage order.
inline void cq_decode(const uint8_t* codes, const uint16_t* centroids, int head_dim, int c, int n_codes, float* out,
                      int stages = 1) {
  const int w = c * stages;
  for (int g = 0; g < head_dim / c; ++g) {
    float* block = out + (g / stages) * w;
    const uint16_t* cg = centroids + int64_t{g} * w * n_codes + codes[g];
    for (int i = 0; i < w; ++i) {
      const float x = fp16_to_f32(cg[int64_t{i} * n_codes]);
      block[i] = g % stages == 0 ? x : block[i] + x;
    }
  }
}

// The recent rows kept as exact F16 copies (cq_window): q . k for one row, and
// acc += p v. The dot sums channel c in lane c % 8 by fma, folded as buckets
// out's lanes are; the update is one fma per channel. F16 widens exactly.
using CqCopyDotFn = float (*)(const float* q, const uint16_t* k, int head_dim);
using CqCopyAxpyFn = void (*)(float p, const uint16_t* v, int head_dim, float* acc);

struct CqKernels {
  CqEncodeFn encode;
  CqEncodeF32Fn encode_f32;
  CqScoreTableFn score_table;
  CqScoresFn scores;
  CqBucketsFn add_buckets;
  CqBucketsOutFn buckets_out;
  CqCopyDotFn copy_dot;
  CqCopyAxpyFn copy_axpy;
  Isa isa;  // the level the table was asked for, lowered to what the CPU runs
};

// The kernels for `isa` (platform/dispatch.h: a level without a version of its
// own uses the next lower one; AVX-512 runs the AVX2 kernels).
const CqKernels& cq_kernels(Isa isa);

namespace ref {
void cq_encode(const float* x, const uint16_t* centroids, int head_dim, int c, int n_codes, uint8_t* codes);
void cq_encode_f32(const float* x, const float* centroids, int head_dim, int c, int n_codes, uint8_t* codes);
void cq_score_table(const float* q, const uint16_t* centroids, int head_dim, int c, int n_codes, float* table);
void cq_scores(const float* table, const uint8_t* codes, int64_t n, int n_groups, int n_codes, float* scores);
void cq_add_buckets(const float* p, const uint8_t* codes, int64_t n, int n_groups, int n_codes, float* buckets);
void cq_buckets_out(const float* buckets, const uint16_t* centroids, int head_dim, int c, int n_codes, float* out);
float cq_copy_dot(const float* q, const uint16_t* k, int head_dim);
void cq_copy_axpy(float p, const uint16_t* v, int head_dim, float* acc);
}  // namespace ref

// No add_buckets here: AVX2 has no scatter, and each (key, group) is one load,
// add and store either way (walking a block of keys group by group, to keep
// one bucket row hot, measured the same: 85 us for 8192 keys x 16 groups on Zen 3).
namespace avx2 {
void cq_encode(const float* x, const uint16_t* centroids, int head_dim, int c, int n_codes, uint8_t* codes);
void cq_encode_f32(const float* x, const float* centroids, int head_dim, int c, int n_codes, uint8_t* codes);
void cq_score_table(const float* q, const uint16_t* centroids, int head_dim, int c, int n_codes, float* table);
void cq_scores(const float* table, const uint8_t* codes, int64_t n, int n_groups, int n_codes, float* scores);
void cq_buckets_out(const float* buckets, const uint16_t* centroids, int head_dim, int c, int n_codes, float* out);
float cq_copy_dot(const float* q, const uint16_t* k, int head_dim);
void cq_copy_axpy(float p, const uint16_t* v, int head_dim, float* acc);
}  // namespace avx2

}  // namespace kestrel::kernels
