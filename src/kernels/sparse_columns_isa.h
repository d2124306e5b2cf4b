#pragma once
// The per-Isa versions behind sparse_column_kernels() (kernels/sparse_columns.h),
// declared for the table in sparse_columns.cpp and for the tests. Every version
// runs, per row, the same operations in the same order as its scalar twin
// (kernels/ref/sparse_columns_ref.cpp), so all of them give the same bits:
//     acc = fma(value_j, v[r][j], acc)   over the kept inputs of group g, in order
//     y   = fma(s[r][g], acc, y)
//     y   = fma(-m[r][g], group_sum[g], y)
// with y starting at 0 for each chunk. The paired kernels (7-bit activation
// codes) sum each group's products as integers, exactly, then
//     y   = fma(s[r][g] * d[g], float(sum), y)
//     y   = fma(-m[r][g], group_sum[g], y)
// AVX-512 runs the AVX2 paired kernel (no version of its own: the table falls
// back). Declarations only (see kernels/blocks.h for why SIMD translation units
// get no inline code from shared headers).
#include <cstdint>

namespace kestrel::kernels {

struct ColumnLayout;
struct ActiveInputs;
struct PairedInputs;

namespace ref {
void sparse_gemv_nibble_pairs(const uint8_t* columns, const ColumnLayout& layout, const PairedInputs& in,
                              int64_t chunk_begin, int64_t chunk_end, float* y);
void sparse_gemv_nibble(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                        int64_t chunk_end, float* y);
void sparse_gemv_int8(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                      int64_t chunk_end, float* y);
int64_t select_inputs(const float* x, int64_t n, float threshold, int32_t* index, float* value);
}  // namespace ref

namespace avx2 {
void sparse_gemv_nibble_pairs(const uint8_t* columns, const ColumnLayout& layout, const PairedInputs& in,
                              int64_t chunk_begin, int64_t chunk_end, float* y);
void sparse_gemv_nibble(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                        int64_t chunk_end, float* y);
void sparse_gemv_int8(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                      int64_t chunk_end, float* y);
int64_t select_inputs(const float* x, int64_t n, float threshold, int32_t* index, float* value);
}  // namespace avx2

namespace avx512 {
void sparse_gemv_nibble(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                        int64_t chunk_end, float* y);
void sparse_gemv_int8(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                      int64_t chunk_end, float* y);
int64_t select_inputs(const float* x, int64_t n, float threshold, int32_t* index, float* value);
}  // namespace avx512

}  // namespace kestrel::kernels
