// The query metric's whitening of CQ key groups (kv/cq_whitening.h).
#include "kv/cq_whitening.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kestrel {

std::vector<float> cq_whitening_from_moment(std::span<const double> moment, int c, double ridge) {
  double trace = 0.0;
  for (int i = 0; i < c; ++i) trace += moment[static_cast<size_t>(i) * c + i];
  // A zero moment (no query seen): plain squared distance.
  const double scale = trace > 0.0 ? static_cast<double>(c) / trace : 0.0;
  std::vector<double> h(static_cast<size_t>(c) * c);
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < c; ++j) {
      // Symmetrized: sums of q q^T are symmetric up to rounding.
      const double m = 0.5 * (moment[static_cast<size_t>(i) * c + j] + moment[static_cast<size_t>(j) * c + i]);
      h[static_cast<size_t>(i) * c + j] = m * scale + (i == j ? (trace > 0.0 ? ridge : 1.0) : 0.0);
    }
  // Cholesky H = L L^T (L lower); W = L^T. The ridge keeps every pivot >= ridge.
  std::vector<double> l(static_cast<size_t>(c) * c, 0.0);
  for (int j = 0; j < c; ++j) {
    double pivot = h[static_cast<size_t>(j) * c + j];
    for (int k = 0; k < j; ++k) pivot -= l[static_cast<size_t>(j) * c + k] * l[static_cast<size_t>(j) * c + k];
    const double d = std::sqrt(std::max(pivot, 1e-12));
    l[static_cast<size_t>(j) * c + j] = d;
    for (int i = j + 1; i < c; ++i) {
      double s = h[static_cast<size_t>(i) * c + j];
      for (int k = 0; k < j; ++k) s -= l[static_cast<size_t>(i) * c + k] * l[static_cast<size_t>(j) * c + k];
      l[static_cast<size_t>(i) * c + j] = s / d;
    }
  }
  std::vector<float> w(static_cast<size_t>(c) * c, 0.0f);
  for (int i = 0; i < c; ++i)
    for (int j = i; j < c; ++j)
      w[static_cast<size_t>(i) * c + j] = static_cast<float>(l[static_cast<size_t>(j) * c + i]);
  return w;
}

void check_cq_whitening(std::span<const float> w, int c, const char* what) {
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < c; ++j) {
      const float v = w[static_cast<size_t>(i) * c + j];
      if (!std::isfinite(v)) fail(what, ": a whitening entry is not finite");
      if (j < i && v != 0.0f) fail(what, ": the whitening is not upper triangular");
      if (j == i && !(v > 0.0f)) fail(what, ": a whitening diagonal entry is not positive (", v, ")");
    }
}

}  // namespace kestrel
