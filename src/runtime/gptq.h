#pragma once
// GPTQ (Frantar et al. 2023; the weight quantizer of QuaRot): rounds a matrix
// column by column, and each column's rounding error is fed forward to the
// columns not yet rounded, weighted by the inputs' second moments H = Σ x xᵀ,
// so that the layer's output error |(Ŵ - W) X|² (not the weights' error) is
// what the rounding minimises. Plain rounding treats every input channel as
// independent; GPTQ lets correlated channels absorb each other's errors.
//
// The textbook form feeds errors forward through the Cholesky factor of H⁻¹.
// This one needs no inverse: with H = V Vᵀ, V upper triangular (the Cholesky
// factor of H with rows and columns reversed), column k is rounded at
//   w_k + Σ_{j<k} (w_j - q_j) V_jk / V_kk
// (w the original weights, q the rounded ones), which gives the same q
// (tests/unit/runtime/gptq_test.cpp holds both). Columns go in batches of
// 128: inside a batch, errors are fed one column at a time; to the columns
// after it, once per batch as a matrix product.
//
// The formats are the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0): when a block's first column is reached, its scale (and minimum) is
// set from the block's weights as the textbook form holds them then (the
// inverse of V's 32 x 32 diagonal block gives them) by the format's own rule,
// or, for Q4_0/Q5_0, searched as llama.cpp's imatrix rounding searches it,
// weighted by H's diagonal; rounded to F16 as stored. Each element then rounds
// to the nearest value of that grid. The result is the encoded rows
// themselves (re-quantizing the rounded floats would set other scales).
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace kestrel {

class ThreadPool;

struct GptqOptions {
  double damp = 0.01;          // added to H's diagonal, as a share of its mean (H is singular below cols samples)
  // Each column's own second moment added this many times more to H's diagonal:
  // 0 is GPTQ as published; large values lean towards the weighted scale search
  // alone (no error fed forward, as llama.cpp's imatrix rounding). The errors
  // GPTQ moves between correlated columns are fitted to the calibration text:
  // at 0.3 Qwen2.5-1.5B's KLD on WikiText fell 0.040 -> 0.033 and SmolLM2's PPL
  // +9.9 -> +7.9 %, while Qwen2.5-0.5B's PPL rose +11.9 -> +14.8 % (at 1:
  // 0.033, +6.5 %, +17.3 %; docs/benchmarks.md, session 30).
  double diagonal_damp = 0.3;
  int64_t batch = 128;         // columns per lazy batch (a multiple of 32)
  bool scale_search =
      true;  // Q4_0, Q5_0: each block's scale searched on H's diagonal (as llama.cpp's imatrix), not its max
  bool diagonal =
      false;  // H's diagonal only (gptq_factor), no error fed forward (gptq_quantize): the scale search alone
  double sink_weight = 100.0;  // the first input row's weight in H (the attention sink; see gptq_factor)
};

bool gptq_supports(DType type);  // Q4_0, Q4_1, Q5_0, Q5_1, Q8_0

// V with H + diagonal_damp * diag(H) + damp * mean(diag H) * I = V Vᵀ, V upper triangular, row-major
// [cols x cols]; H = Σ over the n rows of x [n x cols] of x xᵀ, the first row
// counted sink_weight times. Row 0 is the calibration's first position, the
// attention sink that every later query reads: as one sample among thousands
// GPTQ would trade its error away, and its keys and values then move every
// attention distribution (SmolLM2, GPTQ on q/k/v alone: KLD 0.218 with plain
// rounding, 0.308 with a weight of 1, 0.183 with 100).

std::vector<float> gptq_factor(const float* x, int64_t n, int64_t cols, const GptqOptions& options, ThreadPool& pool);

// The factor of a diagonal H, V = diag(sqrt(h_j + damp * mean(h))), held as its
// `cols` diagonal values, from each column's sum (or mean) of squares: what
// GptqOptions::diagonal rounds with, from recorded inputs (gptq_factor, which
// returns it so with `diagonal`) or from an importance matrix's means.
std::vector<float> gptq_diagonal_factor(const std::vector<double>& h, double damp);

// Rounds w [rows x cols] (row-major) to `type` with the factor V of its
// inputs ([cols x cols], or its diagonal alone with options.diagonal). Returns the encoded rows (row_bytes(type, cols)
// each); w is replaced by what they decode to.
std::vector<uint8_t> gptq_quantize(float* w, int64_t rows, int64_t cols, DType type, const std::vector<float>& v,
                                   const GptqOptions& options, ThreadPool& pool);

}  // namespace kestrel
