#pragma once
// Per-head attention kernels: one query head against n cached key/value rows
// (online softmax, one pass). The rows come as a list of fixed-size blocks (the
// paged cache, kv/kv_cache.h); the kernels walk the blocks in order and carry
// the softmax state (running max, sum and V accumulator) from one block to the
// next, so the arithmetic is the same, operation for operation, as over one
// contiguous run: a block boundary changes no bit. Scalar twin in
// attention_ref.cpp; the AVX-512 version sums in the same order, so both give
// identical bits.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/f32_kernels.h"
#include "platform/cpu.h"

namespace kestrel::kernels {

// One head's rows as blocks of `block_len` rows of d values. Logical block b
// (rows [b * block_len, (b + 1) * block_len)) starts at k + ids[b] * stride (and
// v + ids[b] * stride); inside a block the rows are contiguous: [block_len][d].
template <class T>
struct KvBlocks {
  const T* k = nullptr;
  const T* v = nullptr;
  const int32_t* ids = nullptr;  // block table, ceil(n / block_len) entries used
  int64_t stride = 0;            // elements from one physical block to the next
  int64_t block_len = 0;         // rows per block, > 0
};

// n contiguous rows [n][d] seen as one block.
template <class T>
KvBlocks<T> contiguous_rows(const T* k, const T* v, int64_t n) {
  static constexpr int32_t kZero = 0;
  return KvBlocks<T>{k, v, &kZero, 0, n > 0 ? n : 1};
}

// q: [d]; out: [d]; attends to rows [0, n). d <= 512.
using AttendF16Fn = void (*)(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale,
                             float* out);
using AttendF32Fn = void (*)(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out);

// The kernels are chosen, with the KV type and the algorithm, through
// kernels/attention_set.h.

namespace ref {
// One KV block of the block-wise online softmax the sage and int8 twins share
// (one rescale per block, exp_approx): max rises to the block's scores' max,
// acc [d] and sum are rescaled by exp_approx(old - new max), then each row j adds
// p_j = exp_approx(s_j - max) to sum and p_j * v_j to acc (fma), v_j written into
// vrow [d] by value_row(j, vrow).
// The first half: the running max rises to the block's and acc [d] and sum
// are rescaled once (the int8 twin shares it and then weighs values its own way).
inline void rescale_to_block(const float* s, int rows, int d, float& max, float& sum, float* acc) {
  float bmax = max;
  for (int j = 0; j < rows; ++j) bmax = std::max(bmax, s[j]);
  const float ms = exp_approx(max - bmax);
  for (int c = 0; c < d; ++c) acc[c] *= ms;
  sum *= ms;
  max = bmax;
}
template <class ValueRow>
inline void softmax_block(const float* s, int rows, int d, float& max, float& sum, float* acc, float* vrow,
                          ValueRow value_row) {
  rescale_to_block(s, rows, d, max, sum, acc);
  for (int j = 0; j < rows; ++j) {
    const float p = exp_approx(s[j] - max);
    sum += p;
    value_row(j, vrow);
    for (int c = 0; c < d; ++c) acc[c] = std::fma(p, vrow[c], acc[c]);
  }
}

void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out);
}  // namespace ref

namespace avx512 {
void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out);
}  // namespace avx512

}  // namespace kestrel::kernels
