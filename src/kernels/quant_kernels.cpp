// Dispatch tables: for every format, the candidate function per Isa level
// (nullptr where a level has no version of its own), resolved entry by entry
// with platform/dispatch.h (the project's one rule for choosing a kernel).
#include "kernels/quant_kernels.h"

#include <array>

#include "core/error.h"
#include "platform/dispatch.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/f32_kernels.h"
#include "kernels/ref/ref_kernels.h"

namespace kestrel::kernels {
namespace {

constexpr int kLevels = kIsaLevels;

struct Candidates {
  DType type;
  DType vec_dot_type;
  PerIsa<DequantizeRowFn> dequantize_row;
  PerIsa<QuantizeRowFn> quantize_row;
  PerIsa<VecDotFn> vec_dot;
  QuantizeRowFn quantize_weights = nullptr;  // when it differs from quantize_row's scalar entry
  QuantizeRowFn quantize_row_a4 = nullptr;   // activation formats: 4-bit codes (act=a4)
  PerIsa<GemvFn> gemv = {};                  // used only at vec_dot's own level
  PerIsa<FloatGemmFn> float_gemm = {};       // likewise
  // The AVX-512 vec_dot and float_gemm need AVX512-BF16 as well (BF16); on a
  // CPU without it both come from the level below, so their bits still agree.
  bool avx512_needs_bf16 = false;
};

// Weight quantizers are scalar on purpose: offline, and byte-for-byte ggml's.
const Candidates kCandidates[] = {
    {DType::F32,
     DType::F32,
     {ref::dequantize_row_f32, nullptr, nullptr},
     {ref::quantize_row_f32, nullptr, nullptr},
     {ref::vec_dot_f32_f32, avx2::vec_dot_f32_f32, avx512::vec_dot_f32_f32}},
    {DType::F16,
     DType::F16,
     {ref::dequantize_row_f16, avx2::dequantize_row_f16, avx512::dequantize_row_f16},
     {ref::quantize_row_f16, avx2::quantize_row_f16, avx512::quantize_row_f16},
     {ref::vec_dot_f16_f16, avx2::vec_dot_f16_f16, avx512::vec_dot_f16_f16},
     nullptr,
     nullptr,
     {},
     {nullptr, avx2::float_gemm_f16, avx512::float_gemm_f16}},
    {DType::BF16,
     DType::BF16,
     {ref::dequantize_row_bf16, avx2::dequantize_row_bf16, avx512::dequantize_row_bf16},
     {ref::quantize_row_bf16, avx2::quantize_row_bf16, avx512::quantize_row_bf16},
     {ref::vec_dot_bf16_bf16, avx2::vec_dot_bf16_bf16, avx512::vec_dot_bf16_bf16},
     nullptr,
     nullptr,
     {},
     {nullptr, avx2::float_gemm_bf16, avx512::float_gemm_bf16},
     true},
    {DType::Q4_0,
     DType::Q8_0,
     {ref::dequantize_row_q4_0, avx2::dequantize_row_q4_0, nullptr},
     {ref::quantize_row_q4_0, nullptr, nullptr},
     {ref::vec_dot_q4_0_q8_0, avx2::vec_dot_q4_0_q8_0, avx512::vec_dot_q4_0_q8_0}},
    {DType::Q4_1,
     DType::Q8_1,
     {ref::dequantize_row_q4_1, avx2::dequantize_row_q4_1, nullptr},
     {ref::quantize_row_q4_1, nullptr, nullptr},
     {ref::vec_dot_q4_1_q8_1, avx2::vec_dot_q4_1_q8_1, avx512::vec_dot_q4_1_q8_1}},
    {DType::Q5_0,
     DType::Q8_0,
     {ref::dequantize_row_q5_0, avx2::dequantize_row_q5_0, nullptr},
     {ref::quantize_row_q5_0, nullptr, nullptr},
     {ref::vec_dot_q5_0_q8_0, avx2::vec_dot_q5_0_q8_0, avx512::vec_dot_q5_0_q8_0},
     nullptr,
     nullptr,
     {nullptr, avx2::gemv_q5_0_q8_0, nullptr}},
    {DType::Q5_1,
     DType::Q8_1,
     {ref::dequantize_row_q5_1, avx2::dequantize_row_q5_1, nullptr},
     {ref::quantize_row_q5_1, nullptr, nullptr},
     {ref::vec_dot_q5_1_q8_1, avx2::vec_dot_q5_1_q8_1, avx512::vec_dot_q5_1_q8_1}},
    {DType::Q8_0,
     DType::Q8_0,
     {ref::dequantize_row_q8_0, avx2::dequantize_row_q8_0, nullptr},
     {ref::quantize_row_q8_0, avx2::quantize_row_q8_0, avx512::quantize_row_q8_0},
     {ref::vec_dot_q8_0_q8_0, avx2::vec_dot_q8_0_q8_0, avx512::vec_dot_q8_0_q8_0},
     ref::quantize_weights_q8_0,
     ref::quantize_row_q8_0_a4},
    {DType::Q8_1,
     DType::Q8_1,
     {ref::dequantize_row_q8_1, nullptr, nullptr},
     {ref::quantize_row_q8_1, avx2::quantize_row_q8_1, avx512::quantize_row_q8_1},
     {nullptr, nullptr, nullptr},
     nullptr,
     ref::quantize_row_q8_1_a4},
    {DType::Q2_K,
     DType::Q8_K,
     {ref::dequantize_row_q2_K, avx2::dequantize_row_q2_K, nullptr},
     {nullptr, nullptr, nullptr},
     {ref::vec_dot_q2_K_q8_K, avx2::vec_dot_q2_K_q8_K, nullptr}},
    {DType::Q3_K,
     DType::Q8_K,
     {ref::dequantize_row_q3_K, avx2::dequantize_row_q3_K, nullptr},
     {nullptr, nullptr, nullptr},
     {ref::vec_dot_q3_K_q8_K, avx2::vec_dot_q3_K_q8_K, nullptr}},
    {DType::Q4_K,
     DType::Q8_K,
     {ref::dequantize_row_q4_K, avx2::dequantize_row_q4_K, nullptr},
     {ref::quantize_row_q4_K, nullptr, nullptr},
     {ref::vec_dot_q4_K_q8_K, avx2::vec_dot_q4_K_q8_K, avx512::vec_dot_q4_K_q8_K}},
    {DType::Q5_K,
     DType::Q8_K,
     {ref::dequantize_row_q5_K, avx2::dequantize_row_q5_K, nullptr},
     {ref::quantize_row_q5_K, nullptr, nullptr},
     {ref::vec_dot_q5_K_q8_K, avx2::vec_dot_q5_K_q8_K, avx512::vec_dot_q5_K_q8_K}},
    {DType::Q6_K,
     DType::Q8_K,
     {ref::dequantize_row_q6_K, avx2::dequantize_row_q6_K, nullptr},
     {ref::quantize_row_q6_K, nullptr, nullptr},
     {ref::vec_dot_q6_K_q8_K, avx2::vec_dot_q6_K_q8_K, avx512::vec_dot_q6_K_q8_K}},
    {DType::IQ4_NL,
     DType::Q8_0,
     {ref::dequantize_row_iq4_nl, avx2::dequantize_row_iq4_nl, nullptr},
     {ref::quantize_row_iq4_nl, nullptr, nullptr},
     {ref::vec_dot_iq4_nl_q8_0, avx2::vec_dot_iq4_nl_q8_0, nullptr}},
    {DType::IQ4_XS,
     DType::Q8_K,
     {ref::dequantize_row_iq4_xs, avx2::dequantize_row_iq4_xs, nullptr},
     {ref::quantize_row_iq4_xs, nullptr, nullptr},
     {ref::vec_dot_iq4_xs_q8_K, avx2::vec_dot_iq4_xs_q8_K, nullptr}},
    {DType::Q8_K,
     DType::Q8_K,
     {ref::dequantize_row_q8_K, nullptr, nullptr},
     {ref::quantize_row_q8_K, avx2::quantize_row_q8_K, avx512::quantize_row_q8_K},
     {nullptr, nullptr, nullptr},
     nullptr,
     ref::quantize_row_q8_K_a4},
};
constexpr size_t kFormats = std::size(kCandidates);
static_assert(kFormats < 128, "format_index stores rows as int8_t");

// One table per level; lookups lower the level to what the CPU runs, so a
// table of a level the CPU lacks is never handed out.
template <class Fn>
Fn pick(const PerIsa<Fn>& fns, int level) {
  return pick_for_isa(fns, static_cast<Isa>(level));
}

int runnable_level(Isa isa) { return static_cast<int>(runnable_isa(isa)); }

using QuantTables = std::array<std::array<QuantKernels, kFormats>, kLevels>;

QuantTables build_quant_tables() {
  QuantTables t{};
  for (int level = 0; level < kLevels; ++level) {
    for (size_t f = 0; f < kFormats; ++f) {
      Candidates c = kCandidates[f];
      if (c.avx512_needs_bf16 && !cpu_features().avx512bf16) {
        c.vec_dot[static_cast<size_t>(Isa::Avx512)] = nullptr;
        c.float_gemm[static_cast<size_t>(Isa::Avx512)] = nullptr;
      }
      // The batched vec_dots (gemv, float_gemm) only where they come from
      // vec_dot's own level, so they give its bits (the AVX-512 Q5_0 vec_dot
      // sums in another order than the AVX2 gemv).
      Isa dot_level = Isa::Scalar;
      const VecDotFn vec_dot = pick_for_isa(c.vec_dot, static_cast<Isa>(level), &dot_level);
      const auto at_dot_level = [&](const auto& candidates) {
        Isa from = Isa::Scalar;
        const auto fn = pick_for_isa(candidates, static_cast<Isa>(level), &from);
        return from == dot_level ? fn : nullptr;
      };
      t[static_cast<size_t>(level)][f] =
          QuantKernels{c.type,
                       c.vec_dot_type,
                       pick(c.dequantize_row, level),
                       pick(c.quantize_row, level),
                       vec_dot,
                       static_cast<Isa>(level),
                       c.quantize_weights != nullptr ? c.quantize_weights : c.quantize_row[0],
                       c.quantize_row_a4,
                       at_dot_level(c.gemv),
                       at_dot_level(c.float_gemm)};
    }
  }
  return t;
}

const QuantTables& quant_tables() {
  static const QuantTables tables = build_quant_tables();
  return tables;
}

// DType id -> row of kCandidates (-1: none). A direct table: the attention
// kernels of a quantized cache look their formats up on every call.
constexpr size_t kMaxTypeId = 64;

std::array<int8_t, kMaxTypeId> build_format_index() {
  std::array<int8_t, kMaxTypeId> index{};
  index.fill(-1);
  for (size_t f = 0; f < kFormats; ++f) index[static_cast<size_t>(kCandidates[f].type)] = static_cast<int8_t>(f);
  return index;
}

int format_index(DType type) {
  static const std::array<int8_t, kMaxTypeId> index = build_format_index();
  const auto id = static_cast<size_t>(type);
  return id < kMaxTypeId ? index[id] : -1;
}

struct F32Candidates {
  PerIsa<DotF32Fn> dot;
  PerIsa<AxpyF32Fn> axpy;
  PerIsa<ScaleF32Fn> scale;
  PerIsa<F16ToF32Fn> f16_to_f32;
  PerIsa<F32ToF16Fn> f32_to_f16;
  PerIsa<SwigluFn> swiglu;
};

const F32Candidates kF32 = {
    {ref::dot_f32, avx2::dot_f32, avx512::dot_f32},
    {ref::axpy_f32, avx2::axpy_f32, avx512::axpy_f32},
    {ref::scale_f32, avx2::scale_f32, avx512::scale_f32},
    {ref::f16_to_f32_row, avx2::f16_to_f32_row, avx512::f16_to_f32_row},
    {ref::f32_to_f16_row, avx2::f32_to_f16_row, avx512::f32_to_f16_row},
    {ref::swiglu_f32, avx2::swiglu_f32, avx512::swiglu_f32},
};

std::array<F32Kernels, kLevels> build_f32_tables() {
  std::array<F32Kernels, kLevels> t{};
  for (int level = 0; level < kLevels; ++level)
    t[static_cast<size_t>(level)] = F32Kernels{pick(kF32.dot, level), pick(kF32.axpy, level),
                                               pick(kF32.scale, level), pick(kF32.f16_to_f32, level),
                                               pick(kF32.f32_to_f16, level), pick(kF32.swiglu, level),
                                               static_cast<Isa>(level)};
  return t;
}

}  // namespace

const QuantKernels& quant_kernels(DType type, Isa isa) {
  const int f = format_index(type);
  if (f < 0) fail("no kernels for tensor type ", dtype_name(type));
  return quant_tables()[static_cast<size_t>(runnable_level(isa))][static_cast<size_t>(f)];
}

const QuantKernels& quant_kernels(DType type) { return quant_kernels(type, best_isa()); }

bool has_quant_kernels(DType type) { return format_index(type) >= 0; }

const F32Kernels& f32_kernels(Isa isa) {
  static const std::array<F32Kernels, kLevels> tables = build_f32_tables();
  return tables[static_cast<size_t>(runnable_level(isa))];
}

const F32Kernels& f32_kernels() {
  static const F32Kernels& best = f32_kernels(best_isa());
  return best;
}

float dot_f32(int64_t n, const float* a, const float* b) { return f32_kernels().dot(n, a, b); }
void axpy_f32(int64_t n, float a, const float* x, float* y) { f32_kernels().axpy(n, a, x, y); }
void scale_f32(int64_t n, float a, float* y) { f32_kernels().scale(n, a, y); }
void f16_to_f32_row(int64_t n, const uint16_t* src, float* dst) { f32_kernels().f16_to_f32(n, src, dst); }
void f32_to_f16_row(int64_t n, const float* src, uint16_t* dst) { f32_kernels().f32_to_f16(n, src, dst); }

QuantizeWeightedFn weighted_quantizer(DType type) {
  switch (type) {
    case DType::Q4_0:
      return ref::quantize_weighted_q4_0;
    case DType::Q4_1:
      return ref::quantize_weighted_q4_1;
    case DType::Q5_0:
      return ref::quantize_weighted_q5_0;
    case DType::Q5_1:
      return ref::quantize_weighted_q5_1;
    case DType::Q4_K:
      return ref::quantize_weighted_q4_K;
    case DType::Q5_K:
      return ref::quantize_weighted_q5_K;
    case DType::Q6_K:
      return ref::quantize_weighted_q6_K;
    default:
      return nullptr;
  }
}

}  // namespace kestrel::kernels
