#pragma once
// The double-precision attention the golden attention tests compare with: a
// captured query row against positions [0, its position] of the KV head it
// reads (tests/golden/attention/format.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "golden/attention/format.h"

namespace kestrel::testing {

// Query row `row` (index into c.q_pos) of stored query head qi, over the
// stored KV head it reads (c.kv_of(qi)), positions [0, c.q_pos[row]].
inline std::vector<double> reference_attention(const QkvCapture& c, int li, int qi, int row, double scale) {
  const int d = c.head_dim, h = c.kv_of(qi), p = c.q_pos[static_cast<size_t>(row)];
  const float* q = c.q(li, row, qi);
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
