#pragma once
// Tensor element types, numbered as ggml numbers them (the GGUF file stores these
// ids). The traits are data: block size and bytes per block, as in ggml's table.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kestrel {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  // KV cache only, never in a file (ids far above ggml's): coupled-quantized
  // rows (kv/cq_codebook.h), one byte code per group of 4 (CQ2: 2 bits per
  // channel) or 8 (CQ1: 1 bit per channel) channels.
  CQ2 = 0x4b510002,
  CQ1 = 0x4b510001,
};

struct DTypeTraits {
  DType type;
  std::string_view name;  // as llama.cpp prints it: "q4_0", "f16", ...
  int64_t block_size;     // elements per block (1 for plain types)
  size_t block_bytes;     // bytes per block
};

// nullopt for an id we do not know (the GGUF reader turns that into an error),
// and for the KV-only types, which no file may hold.
std::optional<DTypeTraits> dtype_traits(uint32_t id);
const DTypeTraits& traits(DType t);
std::string_view dtype_name(DType t);
// Parses "q4_0", "Q8_0", "f16", "cq2", ...; nullopt if unknown.
std::optional<DType> dtype_from_name(std::string_view name);

// CQ2 or CQ1: a type only the KV cache stores, through a codebook.
inline bool is_cq(DType t) { return t == DType::CQ2 || t == DType::CQ1; }

// Bytes in a row of n elements; n must be a multiple of the block size.
inline size_t row_bytes(DType t, int64_t n) {
  const auto& tr = traits(t);
  return static_cast<size_t>(n / tr.block_size) * tr.block_bytes;
}

}  // namespace kestrel
