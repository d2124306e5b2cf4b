#pragma once
// One row times a scaled Kronecker product: y = (x ⊙ s)(A ⊗ B), A n1 x n1 and
// B n2 x n2 row-major. Seen as matrices, x and y are n1 x n2 row-major (X, Y)
// and Y = Aᵀ (X ⊙ S) B: n1 n2 (n1 + n2) multiply-adds instead of (n1 n2)^2.
// FlatQuant's online transform (model/flat_transform.h) runs this once per
// token and projection input (a few hundred thousand multiply-adds against
// millions in the projection it feeds). This is the scalar twin; the AVX2
// kernel (kernels/avx2) does the same passes with FMAs.
#include <cstdint>

#include "platform/cpu.h"

namespace kestrel::kernels {

// x, y: n1 * n2 values (may not alias); s: n1 * n2 or nullptr (no scaling);
// tmp: n1 * n2 floats of scratch.
void kronecker_row(const float* x, const float* s, const float* a, int n1, const float* b, int n2, float* tmp,
                   float* y);

using KroneckerRowFn = void (*)(const float* x, const float* s, const float* a, int n1, const float* b, int n2,
                                float* tmp, float* y);
// The best kernel at or below `isa` (AVX-512 machines run the AVX2 one).
KroneckerRowFn kronecker_row_kernel(Isa isa);

}  // namespace kestrel::kernels
