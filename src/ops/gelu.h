#pragma once
// GELU with the tanh approximation, gated (GeGLU: Gemma's feed-forward):
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   gate[i] = gelu(gate[i]) * up[i]
// with llama.cpp's CPU numerics, which our golden logits are measured against:
// for -10 < x < 10 the value is looked up by x rounded to F16 in a table of
// gelu rounded to F16 (one entry per F16 bit pattern); at or below -10 it is 0,
// at or above 10 it is x. The table is built once, on first use, from the
// formula in double precision.
#include <cstdint>

namespace kestrel {

// gelu(x) as the gated op uses it (for tests and single values).
float gelu_tanh_f16_table(float x);

// The exact formula in double, rounded to float: the reference the table is
// tested against.
float gelu_tanh_exact(float x);

// gate[i] = gelu(gate[i]) * up[i] over n values, in place.
void geglu_inplace(float* gate, const float* up, int64_t n);

}  // namespace kestrel
