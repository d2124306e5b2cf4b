#pragma once
// Per-head attention kernels: one query head against n cached key/value rows
// (online softmax, one pass). The rows come as a list of fixed-size blocks (the
// paged cache, kv/kv_cache.h); the kernels walk the blocks in order and carry
// the softmax state (running max, sum and V accumulator) from one block to the
// next, so the arithmetic is the same, operation for operation, as over one
// contiguous run: a block boundary changes no bit. Scalar twin in
// attention_ref.cpp; the AVX-512 version sums in the same order, so both give
// identical bits.
#include <cstdint>

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
void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out);
}  // namespace ref

namespace avx512 {
void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out);
}  // namespace avx512

}  // namespace kestrel::kernels
