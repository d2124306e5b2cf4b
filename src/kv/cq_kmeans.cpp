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
  // One group of `dim` channels through the encoder kernel, over F32 centroids
  // while they are learnt (every Isa gives its bits).
  uint8_t code = 0;
  kernels::cq_kernels(best_isa()).encode_f32(x, centroids, dim, dim, k, &code);
  return code;
}

std::vector<float> kmeans_pp_init(std::span<const float> points, int dim, int k, uint64_t seed,
                                  std::span<const float> weights) {
  const int64_t n = static_cast<int64_t>(points.size()) / dim;
  assert(n >= 1 && k >= 1 && k <= kMaxK);
  assert(weights.empty() || static_cast<int64_t>(weights.size()) == n);
  SplitMix64 rng{seed};
  std::vector<float> centroids(static_cast<size_t>(dim) * k);
  auto set_centroid = [&](int code, int64_t point) {
    for (int i = 0; i < dim; ++i) centroids[static_cast<size_t>(i) * k + code] = points[point * dim + i];
  };
  auto point = [&](int64_t p) { return points.data() + p * dim; };
  // Multiplying by 1 changes no bit: without weights every draw is the unweighted one.
  auto weight = [&](int64_t p) { return weights.empty() ? 1.0f : weights[static_cast<size_t>(p)]; };
  auto uniform_point = [&] {
    return std::min<int64_t>(static_cast<int64_t>(rng.uniform() * static_cast<double>(n)), n - 1);
  };
  // A point drawn with probability mass[p] / sum (mass >= 0); rounding that
  // leaves the target past the last sum gives the last point with mass. No
  // mass at all (every point with weight sits on a centroid): any point, a
  // repeat that no row will choose first.
  auto draw = [&](auto mass) -> int64_t {
    double total = 0.0;
    for (int64_t p = 0; p < n; ++p) total += mass(p);
    if (!(total > 0.0)) return uniform_point();
    const double target = rng.uniform() * total;
    double cumulative = 0.0;
    for (int64_t p = 0; p < n; ++p) {
      cumulative += mass(p);
      if (mass(p) > 0.0f && cumulative > target) return p;
    }
    for (int64_t p = n - 1;; --p)
      if (mass(p) > 0.0f) return p;
  };
  int64_t chosen = weights.empty() ? uniform_point() : draw(weight);
  set_centroid(0, chosen);
  // Squared distance of every point to its nearest centroid so far.
  std::vector<float> nearest(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) nearest[p] = squared_distance(point(p), point(chosen), dim);
  auto weighted_nearest = [&](int64_t p) { return nearest[p] * weight(p); };
  for (int code = 1; code < k; ++code) {
    chosen = draw(weighted_nearest);
    set_centroid(code, chosen);
    for (int64_t p = 0; p < n; ++p) {
      const float d = squared_distance(point(p), point(chosen), dim);
      if (d < nearest[p]) nearest[p] = d;
    }
  }
  return centroids;
}

KMeansResult kmeans(std::span<const float> points, int dim, int k, uint64_t seed, int max_iterations,
                    std::span<const float> weights) {
  const int64_t n = static_cast<int64_t>(points.size()) / dim;
  KMeansResult r;
  r.centroids = kmeans_pp_init(points, dim, k, seed, weights);
  std::vector<int> assignment(static_cast<size_t>(n), -1);
  std::vector<double> sums(static_cast<size_t>(k) * dim);
  // Weight per code: the count of its points without weights (sums of 1.0 are
  // exact, so the means are the unweighted ones bit for bit).
  std::vector<double> counts(static_cast<size_t>(k));
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
    std::fill(counts.begin(), counts.end(), 0.0);
    for (int64_t p = 0; p < n; ++p) {
      const int code = assignment[p];
      const double w = weights.empty() ? 1.0 : weights[static_cast<size_t>(p)];
      counts[code] += w;
      for (int i = 0; i < dim; ++i) sums[static_cast<size_t>(code) * dim + i] += w * points[p * dim + i];
    }
    for (int code = 0; code < k; ++code)
      if (counts[code] > 0)
        for (int i = 0; i < dim; ++i)
          r.centroids[static_cast<size_t>(i) * k + code] =
              static_cast<float>(sums[static_cast<size_t>(code) * dim + i] / counts[code]);
  }
  return r;
}

}  // namespace kestrel
