#pragma once
// Float primitives of the model's hot path, in the style of quant_kernels.h:
// one table per Isa (scalar twin in kernels/ref), chosen at run time.
#include <cstdint>

#include "platform/cpu.h"

namespace kestrel::kernels {

using DotF32Fn = float (*)(int64_t n, const float* a, const float* b);
using AxpyF32Fn = void (*)(int64_t n, float a, const float* x, float* y);  // y += a * x
using ScaleF32Fn = void (*)(int64_t n, float a, float* y);                 // y *= a
using F16ToF32Fn = void (*)(int64_t n, const uint16_t* src, float* dst);
// Round to nearest even; identical bits on every Isa (an F16 KV cache written on
// one machine reads the same on another).
using F32ToF16Fn = void (*)(int64_t n, const float* src, uint16_t* dst);
// gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) * up[i], with
// exp_approx below: every Isa gives the same bits.
using SwigluFn = void (*)(int64_t n, float* gate, const float* up);

struct F32Kernels {
  DotF32Fn dot;
  AxpyF32Fn axpy;
  ScaleF32Fn scale;
  F16ToF32Fn f16_to_f32;
  F32ToF16Fn f32_to_f16;
  SwigluFn swiglu;
  Isa isa;
};

// e^x as the SIMD kernels compute it (scalar form, same operations, same bits):
// 0 below -87 (and for NaN), x capped at 88; Cody-Waite reduction x = n ln2 + r
// and Cephes' degree-7 polynomial for e^r, times 2^n. Relative error < 4e-7.
// Out of line on purpose: an inline copy built inside a SIMD translation unit
// could be the one the linker keeps.
float exp_approx(float x);

// Its constants, which every width's version (exp_approx8, exp_approx16) shares.
struct ExpApprox {
  static constexpr float kMin = -87.0f;  // below: 0
  static constexpr float kMax = 88.0f;   // x capped here
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = -0.693359375f;  // -ln 2 in two parts (Cody-Waite)
  static constexpr float kLn2Lo = 2.12194440e-4f;
  // e^r - 1 - r = r^2 (((((c0 r + c1) r + c2) r + c3) r + c4) r + c5), Horner from c0.
  static constexpr float kPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                     4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
};

// The table for `isa`, lowered to what the CPU runs; the no-argument form uses best_isa().
const F32Kernels& f32_kernels(Isa isa);
const F32Kernels& f32_kernels();

// Conveniences on best_isa(). In a loop, hoist f32_kernels() out instead.
float dot_f32(int64_t n, const float* a, const float* b);
void axpy_f32(int64_t n, float a, const float* x, float* y);
void scale_f32(int64_t n, float a, float* y);
void f16_to_f32_row(int64_t n, const uint16_t* src, float* dst);
void f32_to_f16_row(int64_t n, const float* src, uint16_t* dst);

}  // namespace kestrel::kernels
