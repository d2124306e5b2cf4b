#pragma once
// Scalar twins of every kernel: plain C++, the reference the SIMD versions are
// tested against, and the fallback on CPUs without AVX2. Signatures match the
// function-pointer types of kernels/quant_kernels.h and kernels/f32_kernels.h.
// Declarations only (<cstdint>), so SIMD translation units may call them for tails.
#include <cstdint>

namespace kestrel::kernels::ref {

// Plain types. vec_dot accumulates in double, as ggml's generic dot does.
void dequantize_row_f32(const void* src, float* dst, int64_t n);
void quantize_row_f32(const float* src, void* dst, int64_t n);
float vec_dot_f32_f32(int64_t n, const void* w, const void* a);
void dequantize_row_f16(const void* src, float* dst, int64_t n);
void quantize_row_f16(const float* src, void* dst, int64_t n);
float vec_dot_f16_f16(int64_t n, const void* w, const void* a);
void dequantize_row_bf16(const void* src, float* dst, int64_t n);
void quantize_row_bf16(const float* src, void* dst, int64_t n);
float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a);

// 32-element block formats.
void dequantize_row_q4_0(const void* src, float* dst, int64_t n);
void quantize_row_q4_0(const float* src, void* dst, int64_t n);
float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
void dequantize_row_q4_1(const void* src, float* dst, int64_t n);
void quantize_row_q4_1(const float* src, void* dst, int64_t n);
float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a);
void dequantize_row_q5_0(const void* src, float* dst, int64_t n);
void quantize_row_q5_0(const float* src, void* dst, int64_t n);
float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
void dequantize_row_q5_1(const void* src, float* dst, int64_t n);
void quantize_row_q5_1(const float* src, void* dst, int64_t n);
float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a);
void dequantize_row_q8_0(const void* src, float* dst, int64_t n);
void quantize_row_q8_0(const float* src, void* dst, int64_t n);
void quantize_weights_q8_0(const float* src, void* dst, int64_t n);  // llama-quantize's Q8_0
float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a);
void dequantize_row_q8_1(const void* src, float* dst, int64_t n);
void quantize_row_q8_1(const float* src, void* dst, int64_t n);

// 256-element super-block formats. Q2_K and Q3_K are read only (no quantizer).
void dequantize_row_q2_K(const void* src, float* dst, int64_t n);
float vec_dot_q2_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q3_K(const void* src, float* dst, int64_t n);
float vec_dot_q3_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q4_K(const void* src, float* dst, int64_t n);
void quantize_row_q4_K(const float* src, void* dst, int64_t n);
float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q5_K(const void* src, float* dst, int64_t n);
void quantize_row_q5_K(const float* src, void* dst, int64_t n);
float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q6_K(const void* src, float* dst, int64_t n);
void quantize_row_q6_K(const float* src, void* dst, int64_t n);
float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q8_K(const void* src, float* dst, int64_t n);

// Weight quantizers weighted by an importance matrix (importance[n]: one weight
// per column, llama-imatrix's mean squared input), byte for byte what
// llama-quantize writes given that imatrix. n is a whole row (the legacy
// formats weigh by the row's mean square).
void quantize_weighted_q4_0(const float* src, void* dst, int64_t n, const float* importance);
void quantize_weighted_q4_1(const float* src, void* dst, int64_t n, const float* importance);
void quantize_weighted_q5_0(const float* src, void* dst, int64_t n, const float* importance);
void quantize_weighted_q5_1(const float* src, void* dst, int64_t n, const float* importance);
void quantize_weighted_q4_K(const float* src, void* dst, int64_t n, const float* importance);
void quantize_weighted_q5_K(const float* src, void* dst, int64_t n, const float* importance);
void quantize_weighted_q6_K(const float* src, void* dst, int64_t n, const float* importance);

// Non-linear 4-bit formats (kIq4nlValues).
void dequantize_row_iq4_nl(const void* src, float* dst, int64_t n);
void quantize_row_iq4_nl(const float* src, void* dst, int64_t n);
float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a);
void dequantize_row_iq4_xs(const void* src, float* dst, int64_t n);
void quantize_row_iq4_xs(const float* src, void* dst, int64_t n);
float vec_dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a);
void quantize_row_q8_K(const float* src, void* dst, int64_t n);

// 4-bit activations in the 8-bit activation formats (act=a4): codes in [-7, 7].
void quantize_row_q8_0_a4(const float* src, void* dst, int64_t n);
void quantize_row_q8_1_a4(const float* src, void* dst, int64_t n);
void quantize_row_q8_K_a4(const float* src, void* dst, int64_t n);

// Float primitives (kernels/f32_kernels.h).
float dot_f32(int64_t n, const float* a, const float* b);
void axpy_f32(int64_t n, float a, const float* x, float* y);
void scale_f32(int64_t n, float a, float* y);
void f16_to_f32_row(int64_t n, const uint16_t* src, float* dst);
void f32_to_f16_row(int64_t n, const float* src, uint16_t* dst);
void swiglu_f32(int64_t n, float* gate, const float* up);

}  // namespace kestrel::kernels::ref
