#pragma once
// AVX2 + FMA + F16C kernels (compiled with that folder's -m flags; call only when
// isa_supported() says so). Same signatures as the scalar twins in
// kernels/ref/ref_kernels.h. Weight quantizers are not here: they are offline and
// scalar. Declarations only, no inline code (see kernels/blocks.h for why).
#include <cstddef>
#include <cstdint>

namespace kestrel::kernels::avx2 {

// FlatQuant's transform of one row (kernels/kronecker.h).
void kronecker_row(const float* x, const float* s, const float* a, int n1, const float* b, int n2, float* tmp,
                   float* y);

// Plain types.
float vec_dot_f32_f32(int64_t n, const void* w, const void* a);
void dequantize_row_f16(const void* src, float* dst, int64_t n);
void quantize_row_f16(const float* src, void* dst, int64_t n);
float vec_dot_f16_f16(int64_t n, const void* w, const void* a);
void dequantize_row_bf16(const void* src, float* dst, int64_t n);
void quantize_row_bf16(const float* src, void* dst, int64_t n);
float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a);

// 32-element block formats.
void dequantize_row_q4_0(const void* src, float* dst, int64_t n);
float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
void dequantize_row_q4_1(const void* src, float* dst, int64_t n);
float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a);
void dequantize_row_q5_0(const void* src, float* dst, int64_t n);
float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
// vec_dot_q5_0_q8_0 over `rows` rows, its bits (kernels/quant_kernels.h GemvFn).
void gemv_q5_0_q8_0(int64_t n, const void* w, size_t row_stride, int64_t rows, const void* a, float* y);
void float_gemm_f16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                    float* y, int64_t y_stride);
void float_gemm_bf16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                     float* y, int64_t y_stride);
void dequantize_row_q5_1(const void* src, float* dst, int64_t n);
float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a);
void dequantize_row_q8_0(const void* src, float* dst, int64_t n);
void quantize_row_q8_0(const float* src, void* dst, int64_t n);
float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a);
void quantize_row_q8_1(const float* src, void* dst, int64_t n);

// 256-element super-block formats.
void dequantize_row_q4_K(const void* src, float* dst, int64_t n);
float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q5_K(const void* src, float* dst, int64_t n);
float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q6_K(const void* src, float* dst, int64_t n);
float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a);
void quantize_row_q8_K(const float* src, void* dst, int64_t n);

// Float primitives (kernels/f32_kernels.h).
float dot_f32(int64_t n, const float* a, const float* b);
void axpy_f32(int64_t n, float a, const float* x, float* y);
void scale_f32(int64_t n, float a, float* y);
void f16_to_f32_row(int64_t n, const uint16_t* src, float* dst);
void f32_to_f16_row(int64_t n, const float* src, uint16_t* dst);
void swiglu_f32(int64_t n, float* gate, const float* up);

// Low-bit formats of published GGUFs: Q2_K, Q3_K (dot_k_low_avx2.cpp) and
// IQ4_NL, IQ4_XS (dot_iq4_avx2.cpp). No quantize_row: the weight quantizers
// are scalar and their activation formats (Q8_0, Q8_K) are above.
void dequantize_row_q2_K(const void* src, float* dst, int64_t n);
float vec_dot_q2_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_q3_K(const void* src, float* dst, int64_t n);
float vec_dot_q3_K_q8_K(int64_t n, const void* w, const void* a);
void dequantize_row_iq4_nl(const void* src, float* dst, int64_t n);
float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a);
void dequantize_row_iq4_xs(const void* src, float* dst, int64_t n);
float vec_dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a);

}  // namespace kestrel::kernels::avx2

// ---- Panel GEMM (kernels/packed_gemm.h; kernels/avx2/panel_gemm_avx2.cpp) ----
namespace kestrel::kernels {
struct PanelFormat;
struct PanelGemmArgs;
}  // namespace kestrel::kernels

namespace kestrel::kernels::avx2 {

// One 16-row panel times a batch of tokens, bit-identical with ref::panel_gemm
// (maddubs/madd in place of VNNI's vpdpbusd). Activation quants must lie in
// -127..127, as kestrel's Q8 quantizers make them.
void panel_gemm(const PanelFormat& f, const PanelGemmArgs& args);

}  // namespace kestrel::kernels::avx2
