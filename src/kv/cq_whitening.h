#pragma once
// The query metric of CQ keys (issue 14): what attention needs from a coded key
// group is q_g . k_g, so the error of a key group e costs E[(q_g . e)^2] =
// e^T H e with H = E[q_g q_g^T] over the queries that read it, not |e|^2.
// With H = W^T W (W upper triangular, Cholesky), e^T H e = |W e|^2: k-means on
// the whitened points W x is k-means under the query metric (the mean is still
// the best centroid of a cluster, since W is linear). The codebook keeps the
// centroids where k-means left them, E = W C (kv/cq_codebook.h), so the encoder
// finds the nearest one under the metric by comparing W x with E in plain
// squared distance (the encoder kernel, kernels/cq_kernels.h, does not change)
// and the attention reads E through W (kernels/cq_whiten.h).
//
// Matrices are c x c, row-major. Arithmetic is scalar with explicit fma, in a
// fixed order: every machine gives the same bits.
#include <span>
#include <vector>

#include "kernels/cq_whiten.h"

namespace kestrel {

// The default ridge: H is scaled to trace c and ridge * I is added before the
// factorization, so a direction the calibration's queries took little still
// counts: the queries at run time are other text's. Measured on SmolLM2
// (docs/cq_accuracy.md): 0.01 lets the dominant query direction take the
// codes and costs accuracy; 1.0 (a direction's weight at most doubled) is the
// best value tried.
inline constexpr double kCqDefaultRidge = 1.0;

// moment: [c][c], symmetric positive semi-definite (a sum or mean of q q^T).
// Returns W, [c][c] upper triangular with a positive diagonal, such that
// W^T W = moment / (trace / c) + ridge I (the identity for a zero moment).
std::vector<float> cq_whitening_from_moment(std::span<const double> moment, int c, double ridge);

// m [c][c] += x x^T: one sample's contribution to a group's second moment
// (the queries' for keys, kv/cq_query_moments.h; the output projection's
// columns' for values, runtime/cq_calibration.h).
inline void cq_add_outer(double* m, const float* x, int c) {
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < c; ++j) m[i * c + j] += static_cast<double>(x[i]) * x[j];
}

// y = W x and its inverse (kernels/cq_whiten.h: the attention kernels map
// queries and decoded rows with them too).
using kernels::cq_unwhiten;
using kernels::cq_whiten;

// Throws kestrel::Error unless w is upper triangular with a finite, positive
// diagonal and finite entries (what cq_whitening_from_moment makes). `what`
// names it in the message.
void check_cq_whitening(std::span<const float> w, int c, const char* what);

}  // namespace kestrel
