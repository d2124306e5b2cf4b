#pragma once
// Shared helpers of the kernel tests: row patterns, the list of formats, and
// the ISA loop (every level the host runs, so each SIMD path meets its twin).
#include <cmath>
#include <ostream>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "kernels/quant_kernels.h"
#include "platform/cpu.h"

namespace kestrel::kernels::test {

// The weight formats, each paired with its activation format as ggml pairs them.
struct FormatPair {
  DType weight;
  DType act;
};
inline const std::vector<FormatPair>& weight_formats() {
  static const std::vector<FormatPair> v = {
      {DType::F32, DType::F32},   {DType::F16, DType::F16},   {DType::BF16, DType::BF16},
      {DType::Q4_0, DType::Q8_0}, {DType::Q4_1, DType::Q8_1}, {DType::Q5_0, DType::Q8_0},
      {DType::Q5_1, DType::Q8_1}, {DType::Q8_0, DType::Q8_0}, {DType::Q4_K, DType::Q8_K},
      {DType::Q5_K, DType::Q8_K}, {DType::Q6_K, DType::Q8_K},
  };
  return v;
}

// Every format with a dot product: weight_formats() and the ones the generic
// round-trip tests leave out, Q2_K and Q3_K (no quantizer: kestrel reads them,
// it does not write them) and IQ4_NL, IQ4_XS (their quantizers have tests of
// their own in iq4_test.cpp).
inline const std::vector<FormatPair>& dot_formats() {
  static const std::vector<FormatPair> v = [] {
    std::vector<FormatPair> all = weight_formats();
    all.insert(all.end(), {{DType::Q2_K, DType::Q8_K},
                           {DType::Q3_K, DType::Q8_K},
                           {DType::IQ4_NL, DType::Q8_0},
                           {DType::IQ4_XS, DType::Q8_K}});
    return all;
  }();
  return v;
}

inline std::vector<DType> activation_formats() { return {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::F16, DType::BF16}; }

inline std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa isa : supported_isas())
    if (isa != Isa::Scalar) out.push_back(isa);
  return out;
}

inline std::string label(DType t, Isa isa) {
  return std::string(dtype_name(t)) + "/" + std::string(isa_name(isa));
}

enum class Pattern { Normal, Uniform, Constant, Zero, Huge, Tiny, Outlier, Ties, Mixed };

inline std::vector<Pattern> all_patterns() {
  return {Pattern::Normal, Pattern::Uniform, Pattern::Constant, Pattern::Zero,  Pattern::Huge,
          Pattern::Tiny,   Pattern::Outlier, Pattern::Ties,     Pattern::Mixed};
}

inline const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::Normal: return "normal";
    case Pattern::Uniform: return "uniform";
    case Pattern::Constant: return "constant";
    case Pattern::Zero: return "zero";
    case Pattern::Huge: return "huge";
    case Pattern::Tiny: return "tiny";
    case Pattern::Outlier: return "outlier";
    case Pattern::Ties: return "ties";
    case Pattern::Mixed: return "mixed";
  }
  return "?";
}

// n values of a pattern. Huge stays below fp16's range (scales are fp16), tiny
// is small enough that fp16 scales go subnormal.
inline std::vector<float> make_row(Pattern p, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float v = 0.0f;
    switch (p) {
      case Pattern::Normal: v = normal(rng); break;
      case Pattern::Uniform: v = uniform(rng) * 3.0f + 0.5f; break;
      case Pattern::Constant: v = 0.7431f; break;
      case Pattern::Zero: v = 0.0f; break;
      case Pattern::Huge: v = normal(rng) * 2000.0f; break;
      case Pattern::Tiny: v = normal(rng) * 1e-6f; break;
      case Pattern::Outlier: v = (i % 97 == 5) ? 300.0f : normal(rng) * 0.01f; break;
      case Pattern::Ties: {
        // Multiples of 1/4 with the block maximum 127/2: the 8-bit quantizers
        // scale by 127/amax = 2, so every odd multiple lands on an exact .5 tie.
        const int64_t in_block = i % 32;
        v = in_block == 0 ? 63.5f : static_cast<float>(static_cast<int>(uniform(rng) * 240.0f)) * 0.25f;
        break;
      }
      case Pattern::Mixed: v = normal(rng) * std::pow(10.0f, static_cast<float>(static_cast<int>(i / 32 % 7) - 3)); break;
    }
    x[static_cast<size_t>(i)] = v;
  }
  return x;
}

inline std::vector<uint8_t> quantize(DType t, const std::vector<float>& x, Isa isa) {
  std::vector<uint8_t> out(row_bytes(t, static_cast<int64_t>(x.size())));
  quant_kernels(t, isa).quantize_row(x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

inline bool has_quantizer(DType t) { return quant_kernels(t, Isa::Scalar).quantize_row != nullptr; }

inline std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, int64_t n, Isa isa) {
  std::vector<float> out(static_cast<size_t>(n));
  quant_kernels(t, isa).dequantize_row(q.data(), out.data(), n);
  return out;
}

// Element counts that exercise one block, odd block counts and long rows.
inline std::vector<int64_t> row_lengths(DType t) {
  const int64_t bs = traits(t).block_size == 1 ? 32 : traits(t).block_size;
  std::vector<int64_t> out = {bs, 3 * bs, 7 * bs, 9 * bs, 17 * bs, 33 * bs};
  if (bs == 32) out.push_back(4096);
  if (bs == 256) out.push_back(4096);
  if (traits(t).block_size == 1) {
    for (int64_t n : {1, 7, 15, 17, 31, 63, 65, 1001}) out.push_back(n);
  }
  return out;
}

}  // namespace kestrel::kernels::test

namespace kestrel::kernels::test {

// Offsets of the fp16 fields of a block (scale, min) that must hold finite
// values for random-byte blocks to be meaningful.
inline std::vector<int> half_fields(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return {0};
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q6_K: return {208};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::IQ4_NL: case DType::IQ4_XS: return {0};
    default: return {};
  }
}

// A row of random blocks: every quant bit pattern occurs, scales are finite
// fp16 values of either sign in [1e-3, 2]. Plain types get random finite values.
inline std::vector<uint8_t> random_blocks(DType t, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(1e-3f, 2.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto scale = [&] { return (rng() & 1 ? -1.0f : 1.0f) * mag(rng); };
  std::vector<uint8_t> out(row_bytes(t, n));
  if (t == DType::F32) {
    for (int64_t i = 0; i < n; ++i) { const float v = normal(rng); std::memcpy(&out[4 * static_cast<size_t>(i)], &v, 4); }
    return out;
  }
  if (t == DType::F16 || t == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = t == DType::F16 ? f32_to_fp16(normal(rng)) : f32_to_bf16(normal(rng));
      std::memcpy(&out[2 * static_cast<size_t>(i)], &h, 2);
    }
    return out;
  }
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  const size_t bb = traits(t).block_bytes;
  for (size_t off = 0; off < out.size(); off += bb)
    for (int f : half_fields(t)) {
      const uint16_t h = f32_to_fp16(scale());
      std::memcpy(&out[off + static_cast<size_t>(f)], &h, 2);
    }
  return out;
}

// Per element: the offset part of the weight value (m of Q4_1/Q5_1, dmin*m_j of
// Q4_K/Q5_K), 0 for symmetric formats. Used to size error bounds.
std::vector<float> offset_parts(DType t, const std::vector<uint8_t>& q, int64_t n);

}  // namespace kestrel::kernels::test

namespace kestrel {
// Writes an `Isa` into gtest failure messages (found by argument lookup).
inline std::ostream& operator<<(std::ostream& os, Isa isa) { return os << isa_name(isa); }
}  // namespace kestrel
