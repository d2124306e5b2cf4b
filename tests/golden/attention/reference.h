#pragma once
// The double-precision attention the golden attention tests compare with: query
// row p of head h over positions [0, p] of a captured layer (tests/golden/attention).
#include <algorithm>
#include <cmath>
#include <vector>

#include "golden/attention/format.h"

namespace kestrel::testing {

inline std::vector<double> reference_attention(const QkvCapture& c, int li, int h, int p, double scale) {
  const int d = c.head_dim;
  const float* q = c.q(li, p, h);
  std::vector<double> sc(static_cast<size_t>(p) + 1), want(static_cast<size_t>(d), 0.0);
  double m = -1e300, l = 0;
  for (int j = 0; j <= p; ++j) {
    double dot = 0;
    for (int i = 0; i < d; ++i) dot += double{q[i]} * c.k(li, j, h)[i];
    sc[j] = dot * scale;
    m = std::max(m, sc[j]);
  }
  for (int j = 0; j <= p; ++j) {
    const double w = std::exp(sc[j] - m);
    l += w;
    for (int i = 0; i < d; ++i) want[i] += w * c.v(li, j, h)[i];
  }
  for (double& w : want) w /= l;
  return want;
}

}  // namespace kestrel::testing
