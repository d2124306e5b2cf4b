#pragma once
// The triangular maps of a CQ codebook learnt under a metric (kv/cq_whitening.h):
// per group of c channels an upper-triangular W ([c][c], row-major, positive
// diagonal). Such a codebook holds its centroids whitened (E = W C), the space
// its encoder searches; what attention needs of them comes back through W:
//   q . C = (W^-T q) . E      a query is mapped once, the score table reads E
//   sum p C = W^-1 sum p E    the output of V's buckets is mapped once
//   C = W^-1 E                rows decoded for prompt tiles
// Scalar with explicit fma in a fixed order: every machine gives the same bits,
// and each call is c (c + 1) / 2 multiply-adds per group, once per query or
// decoded code, not per key.
namespace kestrel::kernels {

// y = W x (x, y: [c]; may not alias).
void cq_whiten(const float* w, int c, const float* x, float* y);
// x = W^-1 y (back substitution; x may be y).
void cq_unwhiten(const float* w, int c, const float* y, float* x);
// x = W^-T y (forward substitution; x may be y).
void cq_unwhiten_transposed(const float* w, int c, const float* y, float* x);

// The same over a row of head_dim / c groups, group g through w + g c c, in place.
void cq_unwhiten_row(const float* w, int head_dim, int c, float* row);
void cq_unwhiten_transposed_row(const float* w, int head_dim, int c, float* row);

}  // namespace kestrel::kernels
