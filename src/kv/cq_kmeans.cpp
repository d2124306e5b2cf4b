// k-means++ and Lloyd iterations (kv/cq_kmeans.h).
#include "kv/cq_kmeans.h"

#include <algorithm>
#include <cassert>
#include <cstddef>

#include "core/hash.h"
#include "kernels/cq_kernels.h"

namespace kestrel {
namespace {

// A CQ code is one byte: at most 256 centroids.
constexpr int kMaxK = 256;

struct SplitMix64 {
  uint64_t state;
  uint64_t next() { return splitmix64(state); }
  // Uniform in [0, 1): the top 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

float squared_distance(const float* x, const float* y, int dim) {
  float d = 0.0f;
  for (int i = 0; i < dim; ++i) {
    const float e = x[i] - y[i];
    d += e * e;
  }
  return d;
}

}  // namespace

uint64_t mix_seed(uint64_t seed, uint64_t salt) {
  SplitMix64 g{seed ^ (salt * 0xD1B54A32D192ED03ull)};
  return g.next();
}

int nearest_centroid(const float* x, const float* centroids, int dim, int k) {
  assert(k >= 1 && k <= kMaxK);
  // One group of `dim` channels through the cache's encoder (every Isa gives its bits).
  uint8_t code = 0;
  kernels::cq_kernels(best_isa()).encode(x, centroids, dim, dim, k, &code);
  return code;
}

std::vector<float> kmeans_pp_init(std::span<const float> points, int dim, int k, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(points.size()) / dim;
  assert(n >= 1 && k >= 1 && k <= kMaxK);
  SplitMix64 rng{seed};
  std::vector<float> centroids(static_cast<size_t>(dim) * k);
  auto set_centroid = [&](int code, int64_t point) {
    for (int i = 0; i < dim; ++i) centroids[static_cast<size_t>(i) * k + code] = points[point * dim + i];
  };
  auto point = [&](int64_t p) { return points.data() + p * dim; };

  int64_t chosen = std::min<int64_t>(static_cast<int64_t>(rng.uniform() * static_cast<double>(n)), n - 1);
  set_centroid(0, chosen);
  // Squared distance of every point to its nearest centroid so far.
  std::vector<float> nearest(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) nearest[p] = squared_distance(point(p), point(chosen), dim);
  for (int code = 1; code < k; ++code) {
    double total = 0.0;
    for (int64_t p = 0; p < n; ++p) total += nearest[p];
    if (total > 0.0) {
      const double target = rng.uniform() * total;
      double cumulative = 0.0;
      chosen = -1;
      for (int64_t p = 0; p < n && chosen < 0; ++p) {
        cumulative += nearest[p];
        if (nearest[p] > 0.0f && cumulative > target) chosen = p;
      }
      // Rounding can leave the target past the last sum: the last point with weight.
      for (int64_t p = n - 1; chosen < 0; --p)
        if (nearest[p] > 0.0f) chosen = p;
    } else {
      // Every point sits on a centroid: repeat one (a code no row will choose first).
      chosen = std::min<int64_t>(static_cast<int64_t>(rng.uniform() * static_cast<double>(n)), n - 1);
    }
    set_centroid(code, chosen);
    for (int64_t p = 0; p < n; ++p) {
      const float d = squared_distance(point(p), point(chosen), dim);
      if (d < nearest[p]) nearest[p] = d;
    }
  }
  return centroids;
}

KMeansResult kmeans(std::span<const float> points, int dim, int k, uint64_t seed, int max_iterations) {
  const int64_t n = static_cast<int64_t>(points.size()) / dim;
  KMeansResult r;
  r.centroids = kmeans_pp_init(points, dim, k, seed);
  std::vector<int> assignment(static_cast<size_t>(n), -1);
  std::vector<double> sums(static_cast<size_t>(k) * dim);
  std::vector<int64_t> counts(static_cast<size_t>(k));
  for (int it = 1; it <= max_iterations; ++it) {
    int64_t changed = 0;
    for (int64_t p = 0; p < n; ++p) {
      const int code = nearest_centroid(points.data() + p * dim, r.centroids.data(), dim, k);
      if (code != assignment[p]) ++changed;
      assignment[p] = code;
    }
    r.iterations = it;
    if (changed == 0) {
      r.converged = true;
      break;
    }
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0);
    for (int64_t p = 0; p < n; ++p) {
      const int code = assignment[p];
      ++counts[code];
      for (int i = 0; i < dim; ++i) sums[static_cast<size_t>(code) * dim + i] += points[p * dim + i];
    }
    for (int code = 0; code < k; ++code)
      if (counts[code] > 0)
        for (int i = 0; i < dim; ++i)
          r.centroids[static_cast<size_t>(i) * k + code] =
              static_cast<float>(sums[static_cast<size_t>(code) * dim + i] / static_cast<double>(counts[code]));
  }
  return r;
}

}  // namespace kestrel
