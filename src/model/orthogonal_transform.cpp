#include "model/orthogonal_transform.h"

#include <cmath>
#include <random>

#include "core/error.h"

namespace kestrel {

OrthogonalTransform::OrthogonalTransform(int64_t n, uint64_t seed) : n_(n), p_(1), m_(n) {
  if (n < 1) fail("orthogonal transform: size ", n, " must be positive");
  while (m_ % 2 == 0) {
    m_ /= 2;
    p_ *= 2;
  }
  std::mt19937_64 rng(seed);
  signs_.resize(static_cast<size_t>(n));
  for (float& s : signs_) s = (rng() & 1) ? 1.0f : -1.0f;
  // Gram-Schmidt on Gaussian rows, in double: rows of R orthonormal.
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> r(static_cast<size_t>(m_ * m_));
  for (int64_t i = 0; i < m_; ++i) {
    double* row = &r[static_cast<size_t>(i * m_)];
    for (;;) {
      for (int64_t j = 0; j < m_; ++j) row[j] = normal(rng);
      for (int pass = 0; pass < 2; ++pass)  // twice: re-orthogonalization keeps rounding small
        for (int64_t k = 0; k < i; ++k) {
          const double* prev = &r[static_cast<size_t>(k * m_)];
          double d = 0.0;
          for (int64_t j = 0; j < m_; ++j) d += row[j] * prev[j];
          for (int64_t j = 0; j < m_; ++j) row[j] -= d * prev[j];
        }
      double norm = 0.0;
      for (int64_t j = 0; j < m_; ++j) norm += row[j] * row[j];
      norm = std::sqrt(norm);
      if (norm < 1e-6) continue;  // (almost) dependent: draw again
      for (int64_t j = 0; j < m_; ++j) row[j] /= norm;
      break;
    }
  }
  r_.assign(r.begin(), r.end());
}

void OrthogonalTransform::kronecker(float* v, bool transpose_r) const {
  // R on each group of m consecutive values (fixed j).
  if (m_ > 1) {
    std::vector<float> mixed(static_cast<size_t>(m_));
    for (int64_t j = 0; j < p_; ++j) {
      float* g = v + j * m_;
      for (int64_t a = 0; a < m_; ++a) {
        double s = 0.0;
        for (int64_t b = 0; b < m_; ++b)
          s += static_cast<double>(transpose_r ? r_[static_cast<size_t>(b * m_ + a)]
                                               : r_[static_cast<size_t>(a * m_ + b)]) *
               g[b];
        mixed[static_cast<size_t>(a)] = static_cast<float>(s);
      }
      for (int64_t a = 0; a < m_; ++a) g[a] = mixed[static_cast<size_t>(a)];
    }
  }
  // H across the groups (stride m), butterflies then one scale.
  if (p_ > 1) {
    for (int64_t h = 1; h < p_; h *= 2)
      for (int64_t i = 0; i < p_; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j)
          for (int64_t b = 0; b < m_; ++b) {
            const float x = v[j * m_ + b], y = v[(j + h) * m_ + b];
            v[j * m_ + b] = x + y;
            v[(j + h) * m_ + b] = x - y;
          }
    const float norm = 1.0f / std::sqrt(static_cast<float>(p_));
    for (int64_t i = 0; i < n_; ++i) v[i] *= norm;
  }
}

void OrthogonalTransform::apply(float* v) const {
  kronecker(v, false);
  for (int64_t i = 0; i < n_; ++i) v[i] *= signs_[static_cast<size_t>(i)];
}

void OrthogonalTransform::apply_transposed(float* v) const {
  // Qᵀ = (H ⊗ R)ᵀ D = (H ⊗ Rᵀ) D.
  for (int64_t i = 0; i < n_; ++i) v[i] *= signs_[static_cast<size_t>(i)];
  kronecker(v, true);
}

std::vector<float> OrthogonalTransform::dense() const {
  // Column c is Q e_c.
  std::vector<float> q(static_cast<size_t>(n_ * n_)), e(static_cast<size_t>(n_));
  for (int64_t c = 0; c < n_; ++c) {
    std::fill(e.begin(), e.end(), 0.0f);
    e[static_cast<size_t>(c)] = 1.0f;
    apply(e.data());
    for (int64_t r = 0; r < n_; ++r) q[static_cast<size_t>(r * n_ + c)] = e[static_cast<size_t>(r)];
  }
  return q;
}

}  // namespace kestrel
