#pragma once
// k-means for CQ codebooks (kv/cq_codebook.h): k-means++ seeding, then Lloyd
// iterations, on n points of a few dimensions. Deterministic: one seed gives
// the same centroids on every machine (our own 64-bit generator and uniform
// draw, no std:: distribution, whose algorithm the standard leaves open; sums
// in double, in point order).
//
// Centroids are planar, [dim][k] (what the kernels of kernels/cq_kernels.h read).
#include <cstdint>
#include <span>
#include <vector>

namespace kestrel {

// splitmix64: a seed per codebook from (seed, layer, head, ...) and the draws.
uint64_t mix_seed(uint64_t seed, uint64_t salt);

// The index of the centroid nearest x ([dim]) in squared distance (the CQ
// encoder kernel over F32 centroids, kernels/cq_kernels.h encode_f32, on one group); ties go to
// the lowest index. centroids: [dim][k].
int nearest_centroid(const float* x, const float* centroids, int dim, int k);

// k-means++: the first centroid a uniformly drawn point, each next one a point
// drawn with probability proportional to its squared distance to the nearest
// centroid so far. With fewer than k distinct points, the rest repeat points.
// points: [n][dim], n >= 1. Returns [dim][k].
// With `weights` ([n], non-negative, not all zero; empty: all 1), every draw
// is also proportional to the point's weight (the first one too), as if each
// point stood there `weight` times.
std::vector<float> kmeans_pp_init(std::span<const float> points, int dim, int k, uint64_t seed,
                                  std::span<const float> weights = {});

struct KMeansResult {
  std::vector<float> centroids;  // [dim][k]
  int iterations = 0;            // Lloyd steps run
  bool converged = false;        // the last step changed no assignment
};

// k-means++ then Lloyd: assign each point to its nearest centroid, move each
// centroid to the mean of its points (a centroid with no point stays), until
// an assignment step changes nothing or max_iterations steps have run.
// With `weights`, k-means of the weighted squared error: the seeding above and
// weighted means (a centroid whose points all weigh 0 stays). Empty weights
// give the unweighted result bit for bit.
KMeansResult kmeans(std::span<const float> points, int dim, int k, uint64_t seed, int max_iterations,
                    std::span<const float> weights = {});

}  // namespace kestrel
