#pragma once
// AVX-512 F/BW/VL/DQ + VNNI kernels (compiled with that folder's -m flags; call only when
// isa_supported() says so). Same signatures as the scalar twins in
// kernels/ref/ref_kernels.h. Weight quantizers are not here: they are offline and
// scalar; the block dequantizers fall back to
// the AVX2 ones (not a hot path). Declarations only, no inline code (see kernels/blocks.h for why).
#include <cstddef>
#include <cstdint>

namespace kestrel::kernels {
struct PanelFormat;
struct PanelGemmArgs;
}  // namespace kestrel::kernels

namespace kestrel::kernels::avx512 {

// Plain types.
float vec_dot_f32_f32(int64_t n, const void* w, const void* a);
void dequantize_row_f16(const void* src, float* dst, int64_t n);
void quantize_row_f16(const float* src, void* dst, int64_t n);
float vec_dot_f16_f16(int64_t n, const void* w, const void* a);
void float_gemm_f16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                    float* y, int64_t y_stride);
void dequantize_row_bf16(const void* src, float* dst, int64_t n);
void quantize_row_bf16(const float* src, void* dst, int64_t n);
// These two need AVX512-BF16 besides the level's features (vdpbf16ps).
float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a);
void float_gemm_bf16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                     float* y, int64_t y_stride);

// 32-element block formats.
float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a);
float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a);
void quantize_row_q8_0(const float* src, void* dst, int64_t n);
float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a);
void quantize_row_q8_1(const float* src, void* dst, int64_t n);

// 256-element super-block formats.
float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a);
void quantize_row_q8_K(const float* src, void* dst, int64_t n);

// Panel GEMM (kernels/packed_gemm.h): one 16-row panel times a batch of tokens.
void panel_gemm(const PanelFormat& f, const PanelGemmArgs& args);
// The same for tokens [t_begin, n_tokens) only (the AMX kernel's tail).
void panel_gemm_from(const PanelFormat& f, const PanelGemmArgs& args, int64_t t_begin);
// Adds the min terms (formats with a min) of tokens [t_begin, t_end) to y.
void panel_add_mins(const PanelFormat& f, const PanelGemmArgs& args, int64_t t_begin, int64_t t_end);

// Float primitives (kernels/f32_kernels.h).
float dot_f32(int64_t n, const float* a, const float* b);
void axpy_f32(int64_t n, float a, const float* x, float* y);
void scale_f32(int64_t n, float a, float* y);
void f16_to_f32_row(int64_t n, const uint16_t* src, float* dst);
void f32_to_f16_row(int64_t n, const float* src, uint16_t* dst);
void swiglu_f32(int64_t n, float* gate, const float* up);

}  // namespace kestrel::kernels::avx512
