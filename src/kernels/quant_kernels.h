#pragma once
// Per-format kernel table (the ggml idea: formats as data). For each weight type:
// row dequantize, row quantize (float -> this type), and the dot product of one
// weight row with one activation row that was quantized to vec_dot_type.
// Every entry has a scalar twin in kernels/ref; SIMD tables are chosen by Isa.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "platform/cpu.h"

namespace kestrel::kernels {

using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n);
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n);
// n elements; w is a row of `type`, a is a row of `vec_dot_type`.
using VecDotFn = float (*)(int64_t n, const void* w, const void* a);
// rows consecutive weight rows (row r at w + r * row_stride bytes) against one
// activation row: y[r] = vec_dot(n, row r, a), bit for bit, with the
// activation's share of the work done once per call instead of once per row.
using GemvFn = void (*)(int64_t n, const void* w, size_t row_stride, int64_t rows, const void* a, float* y);
// The float formats (F16, BF16): rows consecutive weight rows against n_tokens
// activation rows given as floats that are already vec_dot_type values (a row
// quantized by quantize_row and widened back, exactly), n floats each:
// y[t * y_stride + r] = vec_dot(n, row r, token t), bit for bit, each weight
// element widened once for several tokens instead of once per token.
using FloatGemmFn = void (*)(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act,
                             int64_t n_tokens, float* y, int64_t y_stride);

// Formats: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K, IQ4_NL, IQ4_XS, and
// the activation-only formats Q8_1 and Q8_K (their vec_dot is nullptr).
// Rows hold n elements, n a multiple of the block size (32, or 256 for K); the
// caller checks shapes (these are hot-path functions and do not).
// Activation quantizers (Q8_0, Q8_1, Q8_K, F16, BF16) give identical bytes on
// every Isa; weight quantizers are scalar and follow ggml's reference ones.
// vec_dot expects activation rows written by this table's quantize_row (8-bit
// quants within -127..127, as the SIMD sign tricks assume). Block dequantizers
// have scalar and AVX2 versions (AVX-512 uses the AVX2 ones: not a hot path).
struct QuantKernels {
  DType type;
  DType vec_dot_type;  // the activation format the dot product wants
  DequantizeRowFn dequantize_row;
  QuantizeRowFn quantize_row;  // activations (and weights; see quantize_weights)
  VecDotFn vec_dot;
  Isa isa;  // the level this table was resolved for (entries may come from lower ones)
  // Float -> this type exactly as llama-quantize writes model files (ggml's
  // reference quantizers). Same as quantize_row except for Q8_0, whose file
  // quantizer rounds ties away from zero with 1/d, while its activation
  // quantizer (quantize_row) follows ggml's x86 path (127/amax, ties to even).
  QuantizeRowFn quantize_weights;
  // The activation formats (Q8_0, Q8_1, Q8_K) only, else nullptr: the same
  // layout with 4-bit codes in [-7, 7] and scale amax / 7 (act=a4). Scalar on
  // every Isa: once per token row, against a whole weight matrix read.
  QuantizeRowFn quantize_row_a4 = nullptr;
  // A row-batched vec_dot of the same level as vec_dot (so the same bits), for
  // the formats that have one (Q5_0 at AVX2); else nullptr.
  GemvFn gemv = nullptr;
  // A rows x tokens vec_dot of the same level for F16 and BF16 (AVX2, AVX-512); else nullptr.
  FloatGemmFn float_gemm = nullptr;
};

// A weight quantizer weighted by an importance matrix (importance[n], one
// weight per column of the row), byte for byte llama-quantize's with an imatrix;
// n is a whole row. Scalar, offline.
using QuantizeWeightedFn = void (*)(const float* src, void* dst, int64_t n, const float* importance);
// The formats llama-quantize weighs (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K);
// nullptr for the others (Q8_0 and the float formats ignore an imatrix there too).
QuantizeWeightedFn weighted_quantizer(DType type);

// Throws kestrel::Error for a type without kernels. The Isa overload returns the
// best table at or below `isa` (falling back entry-wise to lower levels); an
// `isa` the CPU lacks is lowered to the best level the CPU runs.
const QuantKernels& quant_kernels(DType type, Isa isa);
const QuantKernels& quant_kernels(DType type);  // best_isa()
bool has_quant_kernels(DType type);

}  // namespace kestrel::kernels
