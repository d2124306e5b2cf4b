#pragma once
// Per-head attention kernels: one query head against n cached key/value rows
// (online softmax, one pass). Scalar twin in attention_ref.cpp; the AVX-512
// version sums in the same order, so both give identical bits.
#include <cstdint>

#include "platform/cpu.h"

namespace kestrel::kv {

// k, v: [n][d] rows (F16 bits or F32); q: [d]; out: [d]. d <= 512.
using AttendF16Fn = void (*)(const uint16_t* k, const uint16_t* v, int64_t n, int d, const float* q, float scale,
                             float* out);
using AttendF32Fn = void (*)(const float* k, const float* v, int64_t n, int d, const float* q, float scale,
                             float* out);

struct AttentionKernels {
  AttendF16Fn f16;
  AttendF32Fn f32;
};

const AttentionKernels& attention_kernels(Isa isa);

namespace ref {
void attend_f16(const uint16_t* k, const uint16_t* v, int64_t n, int d, const float* q, float scale, float* out);
void attend_f32(const float* k, const float* v, int64_t n, int d, const float* q, float scale, float* out);
}  // namespace ref

namespace avx512 {
void attend_f16(const uint16_t* k, const uint16_t* v, int64_t n, int d, const float* q, float scale, float* out);
void attend_f32(const float* k, const float* v, int64_t n, int d, const float* q, float scale, float* out);
}  // namespace avx512

}  // namespace kestrel::kv
