// Scalar twins of the sorting-free sampler's passes: the definition the SIMD
// versions are tested against, and the path KESTREL_ISA=scalar runs.
#include <algorithm>
#include <cmath>

#include "sampling/sortfree_kernels.h"

namespace kestrel::sampling::ref {

ScanResult scan_max(const float* x, int64_t n, float* block_max) {
  ScanResult r{-std::numeric_limits<float>::infinity(), false};
  for (int64_t b = 0; b < n_blocks(n); ++b) {
    float m = -std::numeric_limits<float>::infinity();
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) {
      if (std::isnan(x[i])) r.nan = true;
      else if (x[i] > m) m = x[i];
    }
    block_max[b] = m;
    r.max = std::max(r.max, m);
  }
  return r;
}

int64_t compact_ge(const float* x, int64_t n, float t, const float* block_max, int32_t* ids, float* vals) {
  int64_t out = 0;
  for (int64_t b = 0; b < n_blocks(n); ++b) {
    if (!(block_max[b] >= t)) continue;
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) {
      if (x[i] >= t) {
        ids[out] = static_cast<int32_t>(i);
        vals[out] = x[i];
        ++out;
      }
    }
  }
  return out;
}

void count_split(const float* x, int64_t n, float t, int64_t* gt, int64_t* eq) {
  int64_t g = 0, e = 0;
  for (int64_t i = 0; i < n; ++i) {
    g += x[i] > t;
    e += x[i] == t;
  }
  *gt = g;
  *eq = e;
}

int64_t filter(float* l, int32_t* id, float* a, float* b, int64_t n, Key k, bool keep_above) {
  int64_t out = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (above(l[i], id[i], k) != keep_above) continue;
    l[out] = l[i];
    id[out] = id[i];
    if (a) a[out] = a[i];
    if (b) b[out] = b[i];
    ++out;
  }
  return out;
}

double exp_weights(const float* x, int64_t n, float shift, float temp, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = std::exp((x[i] - shift) / temp);
    sum += out[i];
  }
  return sum;
}

void normalize(float* w, int64_t n, double z) {
  for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>(w[i] / z);
}

double chunk_sums(const float* l, const int32_t* id, const float* v, int64_t n, Key low, double* sums) {
  double total = 0.0;
  for (int64_t c = 0; c < n_chunks(n); ++c) {
    double s = 0.0;
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i)
      if (above(l[i], id[i], low)) s += v[i];
    sums[c] = s;
    total += s;
  }
  return total;
}

AboveSums sums_above(const float* l, const int32_t* id, const float* p, int64_t n, Key k0, Key k1) {
  AboveSums r{{0.0, 0.0}, {0, 0}};
  for (int64_t i = 0; i < n; ++i) {
    if (above(l[i], id[i], k0)) {
      r.mass[0] += p[i];
      ++r.count[0];
    }
    if (above(l[i], id[i], k1)) {
      r.mass[1] += p[i];
      ++r.count[1];
    }
  }
  return r;
}

}  // namespace kestrel::sampling::ref
