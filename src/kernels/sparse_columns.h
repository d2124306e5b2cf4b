#pragma once
// TEAL (PAPERS.md card 7): a weight stored input-major, so that a decode step
// whose input has many zeros reads only the columns of its nonzero inputs.
//
// GGUF blocks run along the input dimension (a row's 32 or 256 inputs share
// one block), so skipping single inputs there saves no memory traffic. This
// layout turns the weight W [rows, cols] (y = W x) around, without
// re-quantizing it where the format allows: every supported source format
// dequantizes as
//     W[r][j] = s[r][g] * v[r][j] - m[r][g],   g = j / group,
// with a small integer code v and one (scale, offset) per row and group of
// `group` inputs (Q4_0: s = d, m = 8 d, v = q; Q4_K: s = d * sc, m = dmin * mn;
// Q6_K: s = d * sc, m = 32 s, v = q in 0..63, group 16; ...). The codes are
// kept as they are and s, m are rounded to F16 (relative error <= 2^-11).
// Formats without such a form (F32, F16, BF16, Q3_K, IQ4_NL, IQ4_XS, Q2_K)
// are re-quantized to int8 codes per (row, 32 inputs) (s = amax / 127, m = 0).
//
// Layout: rows in chunks of kColumnChunkRows (the last one padded with zero
// rows). Chunk c holds, for each group g of inputs in order:
//     s[128] F16, m[128] F16              the group's scale and offset of rows 128c .. 128c+127
//     group x column_bytes()              the codes of the group's inputs, input by input
// A column's codes for one chunk: Nibble = 64 bytes, byte k holds row k in its
// low nibble and row k + 64 in its high nibble (codes 0..15); Int8 = 128 bytes,
// byte i is row i's code (-128..127). One input's codes for one chunk are one
// (Nibble) or two (Int8) cache lines, so an input that is skipped costs no
// memory traffic, and the inputs kept within one chunk are read in address order.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "platform/cpu.h"

namespace kestrel::kernels {

inline constexpr int64_t kColumnChunkRows = 128;

enum class ColumnCodes : uint8_t { Nibble, Int8 };

struct ColumnLayout {
  int64_t rows = 0;  // the weight's output features
  int64_t cols = 0;  // its inputs (a multiple of group)
  int group = 32;    // inputs sharing one (scale, offset) per row: 16 or 32
  ColumnCodes codes = ColumnCodes::Int8;

  int64_t chunks() const { return (rows + kColumnChunkRows - 1) / kColumnChunkRows; }
  int64_t groups() const { return cols / group; }
  size_t column_bytes() const { return codes == ColumnCodes::Nibble ? 64 : 128; }
  size_t scale_bytes() const { return 2 * kColumnChunkRows * sizeof(uint16_t); }
  size_t group_bytes() const { return scale_bytes() + static_cast<size_t>(group) * column_bytes(); }
  size_t chunk_bytes() const { return static_cast<size_t>(groups()) * group_bytes(); }
  size_t bytes() const { return static_cast<size_t>(chunks()) * chunk_bytes(); }
};

// The layout a weight of `type` and shape [rows, cols] gets (cols must be a
// multiple of the format's block size, as in any GGUF file).
ColumnLayout column_layout(DType type, int64_t rows, int64_t cols);

// Fills `out` (layout.bytes(), 64-byte aligned) with the input-major copy of
// rows [chunk_begin * 128, chunk_end * 128) of the weight whose row r starts
// at data + r * row_stride (GGUF rows of `type`). Chunks are independent, so
// callers split them over threads. Scalar: it runs once per weight.
void build_columns(DType type, const uint8_t* data, size_t row_stride, const ColumnLayout& layout,
                   int64_t chunk_begin, int64_t chunk_end, uint8_t* out);

// The inputs a decode step keeps: ascending input indices with their values,
// and for each group g, the range [group_begin[g], group_begin[g + 1]) of
// those in g and the sum of their values (the offset term m * sum).
struct ActiveInputs {
  const int32_t* index;
  const float* value;
  const int32_t* group_begin;  // [groups + 1]
  const float* group_sum;      // [groups]
};

// y[r] = sum over kept inputs j of value_j * W[r][j], for the rows of chunks
// [chunk_begin, chunk_end) that exist (r < rows): y is the full [rows] output
// and only those rows are written. Accumulates in F32: per group, the sum of
// value_j * v[r][j] over the kept inputs, then s * that - m * group_sum.
using SparseGemvFn = void (*)(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in,
                              int64_t chunk_begin, int64_t chunk_end, float* y);

// Writes the indices j (ascending) and values of the entries of x[0, n) with
// |x[j]| > threshold; returns how many. index and value hold n entries.
using SelectInputsFn = int64_t (*)(const float* x, int64_t n, float threshold, int32_t* index, float* value);

// 7-bit activation codes for Nibble columns (`teal_act=a7`). Where decode is
// bound by arithmetic, not memory (an AVX2 core without VNNI: Zen 1 runs the
// float kernel above at a third of the dense int8 kernels' rate per weight),
// the kept inputs of a group are taken two at a time, and one vpmaddubsw
// multiplies each row's two 4-bit codes by the pair's two activation codes.
// Per group g: d = max |x| / 63 over its kept inputs, code = round(x / d) in
// [-63, 63]. Seven bits, not eight, so that the int16 sum of a group's 16
// pairs (at most 16 * 2 * 15 * 63 = 30240) needs no widening before its end:
// the integer sums are exact, and so are the same in every version.
struct InputPair {
  uint32_t a, b;   // byte offsets from the chunk's start of the two inputs' columns (a lone last input: b = a, code 0)
  uint16_t codes;  // the activation codes: a's in the low byte, b's in the high byte (two's complement)
  uint16_t group;  // the group of both inputs
};

struct PairedInputs {
  const InputPair* pair;
  const int32_t* group_begin;  // [groups + 1]: group g's pairs are [group_begin[g], group_begin[g + 1])
  const float* group_scale;    // [groups]: d
  const float* group_sum;      // [groups]: d * the sum of the group's codes (the offset term m * sum)
};

// Pairs the kept inputs `in` (SelectInputsFn's order, grouped) of a Nibble
// layout (group 32): pair [pairs(in) entries], group_begin [groups + 1],
// group_scale and group_sum [groups]. Scalar, once per step for all chunks.
int64_t max_input_pairs(const ColumnLayout& layout);
void pair_inputs(const ColumnLayout& layout, const ActiveInputs& in, InputPair* pair, int32_t* group_begin,
                 float* group_scale, float* group_sum);

// y[r] = sum over groups g with a pair of  s[r][g] d_g * (integer sum over the
// pairs of code_a v[r][a] + code_b v[r][b])  - m[r][g] * group_sum[g], the
// rows of chunks [chunk_begin, chunk_end) that exist, as SparseGemvFn:
//     y = fma(s * d, float(integer sum), y);   y = fma(-m, group_sum, y)
using PairedGemvFn = void (*)(const uint8_t* columns, const ColumnLayout& layout, const PairedInputs& in,
                              int64_t chunk_begin, int64_t chunk_end, float* y);

struct SparseColumnKernels {
  SparseGemvFn gemv_nibble;
  SparseGemvFn gemv_int8;
  PairedGemvFn gemv_nibble_pairs;
  SelectInputsFn select;
  Isa isa;  // the level this table was resolved for
};

// The best table at or below `isa` (platform/dispatch.h); scalar twins in kernels/ref.
const SparseColumnKernels& sparse_column_kernels(Isa isa);

}  // namespace kestrel::kernels
