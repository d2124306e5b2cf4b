// Scalar F32 / F16 / BF16 rows: conversion both ways and the dot products
// F32·F32, F16·F16, BF16·BF16 (ggml's pairings), accumulated in double.
#include <cstring>

#include "core/fp16.h"
#include "kernels/ref/ref_kernels.h"

namespace kestrel::kernels::ref {

void dequantize_row_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void quantize_row_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

float vec_dot_f32_f32(int64_t n, const void* w, const void* a) {
  return dot_f32(n, static_cast<const float*>(w), static_cast<const float*>(a));
}

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
  f16_to_f32_row(n, static_cast<const uint16_t*>(src), dst);
}

void quantize_row_f16(const float* src, void* dst, int64_t n) {
  f32_to_f16_row(n, src, static_cast<uint16_t*>(dst));
}

float vec_dot_f16_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  double sum = 0.0;
  // Each product is exact in float (11-bit significands), so only the sum rounds.
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_f32(x[i]) * fp16_to_f32(y[i]));
  return static_cast<float>(sum);
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(x[i]);
}

void quantize_row_bf16(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(src[i]);
}

float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  double sum = 0.0;
  // Exact products again (8-bit significands).
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(bf16_to_f32(x[i]) * bf16_to_f32(y[i]));
  return static_cast<float>(sum);
}

}  // namespace kestrel::kernels::ref
