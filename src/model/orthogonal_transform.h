#pragma once
// A random orthogonal n x n matrix that costs O(n (m + log n)) to apply, the
// rotation of QuaRot (PAPERS.md card 10; "rotated 4-bit weights"): n = 2^k m
// with m odd, and
//
//   Q = D (H ⊗ R),
//
// D a diagonal of random signs, H the normalized Walsh-Hadamard matrix of
// size 2^k (H = Hᵀ = H⁻¹) and R a random orthogonal m x m matrix (Gram-Schmidt
// of a Gaussian one). Index i of a vector is (j, b) = (i / m, i % m). For m = 1
// this is QuaRot's randomized Hadamard; for hidden sizes like 576 = 64 x 9 or
// 896 = 128 x 7 the Kronecker factor R mixes what H alone could not reach, so
// an outlier channel still spreads over all n. Everything that rotates the
// residual stream folds Q into weights offline; nothing here runs per token.
#include <cstdint>
#include <vector>

namespace kestrel {

class OrthogonalTransform {
 public:
  // Throws for n < 1.
  OrthogonalTransform(int64_t n, uint64_t seed);

  int64_t size() const { return n_; }
  int64_t power_of_two() const { return p_; }
  int64_t odd_factor() const { return m_; }

  // v <- Q v and v <- Qᵀ v; v has size() values. Safe to call from several threads.
  void apply(float* v) const;
  void apply_transposed(float* v) const;

  // The dense matrix (row-major n x n): for tests and small sizes.
  std::vector<float> dense() const;

 private:
  void kronecker(float* v, bool transpose_r) const;  // v <- (H ⊗ R) v or (H ⊗ Rᵀ) v
  int64_t n_, p_, m_;
  std::vector<float> signs_;  // D
  std::vector<float> r_;      // R, row-major m x m
};

}  // namespace kestrel
