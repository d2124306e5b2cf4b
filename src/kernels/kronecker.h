#pragma once
// One row times a scaled Kronecker product: y = (x ⊙ s)(A ⊗ B), A n1 x n1 and
// B n2 x n2 row-major. Seen as matrices, x and y are n1 x n2 row-major (X, Y)
// and Y = Aᵀ (X ⊙ S) B: n1 n2 (n1 + n2) multiply-adds instead of (n1 n2)^2.
// FlatQuant's online transform (model/flat_transform.h) runs this once per
// token and projection input, a few hundred thousand multiply-adds against
// millions in the projection it feeds, so there is one scalar version, written
// so that the compiler vectorizes its inner loops.
#include <cstdint>

namespace kestrel::kernels {

// x, y: n1 * n2 values (may not alias); s: n1 * n2 or nullptr (no scaling);
// tmp: n1 * n2 floats of scratch.
void kronecker_row(const float* x, const float* s, const float* a, int n1, const float* b, int n2, float* tmp,
                   float* y);

}  // namespace kestrel::kernels
