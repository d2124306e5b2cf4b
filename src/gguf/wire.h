#pragma once
// Internal to the gguf module: facts about the wire format shared by the reader
// and the writer, so both accept and produce exactly the same set of files.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "gguf/gguf.h"

namespace kestrel::gguf::wire {

inline constexpr uint8_t kMagic[4] = {'G', 'G', 'U', 'F'};
inline constexpr uint32_t kWriteVersion = 3;
inline constexpr std::string_view kAlignmentKey = "general.alignment";

// Smallest encodings, used to bound counts by the bytes left before reserving:
// a pair is key length (8) + type (4) + a 1-byte value; a tensor info is name
// length (8) + n_dims (4) + one ne (8) + type (4) + offset (8).
inline constexpr size_t kMinPairBytes = 8 + 4 + 1;
inline constexpr size_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

// nullopt for an id outside 0..12.
std::optional<ValueType> value_type_from_id(uint32_t id);
// Bytes of a scalar on the wire; nullopt for STRING and ARRAY.
std::optional<size_t> scalar_bytes(ValueType t);
// Fewest bytes one element of an array of `t` can take (string: its length
// field; array: element type + count).
size_t min_element_bytes(ValueType t);
bool is_unsigned_int(ValueType t);
bool is_signed_int(ValueType t);
bool is_float(ValueType t);

bool is_pow2(uint64_t v);
// Rounds up to a multiple of `alignment` (a power of two); nullopt on overflow.
std::optional<uint64_t> align_up(uint64_t v, uint64_t alignment);

// "[4096, 32000]"
std::string format_ne(std::span<const int64_t> ne);

// Checks a tensor's shape against its type and returns its byte size: 1..4 dims,
// every ne >= 0, element count and byte size without overflow, ne[0] a multiple
// of the block size. `who` starts the message ("gguf" or "gguf writer").
size_t tensor_nbytes(std::string_view who, std::string_view name, DType type,
                     std::span<const int64_t> ne);
// Non-empty, at most kMaxTensorNameBytes.
void check_tensor_name(std::string_view who, std::string_view name);

// Throws unless general.alignment's value is a U32 power of two; returns it.
size_t check_alignment_value(std::string_view who, const Value& v);

}  // namespace kestrel::gguf::wire
