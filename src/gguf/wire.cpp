#include "gguf/wire.h"

#include <sstream>

#include "core/error.h"

namespace kestrel::gguf::wire {

std::optional<ValueType> value_type_from_id(uint32_t id) {
  if (id > static_cast<uint32_t>(ValueType::F64)) return std::nullopt;
  return static_cast<ValueType>(id);
}

std::optional<size_t> scalar_bytes(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::STRING:
    case ValueType::ARRAY:
      return std::nullopt;
  }
  return std::nullopt;
}

size_t min_element_bytes(ValueType t) {
  if (auto n = scalar_bytes(t)) return *n;
  return t == ValueType::STRING ? 8 : 4 + 8;
}

bool is_unsigned_int(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_signed_int(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_float(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

std::optional<uint64_t> align_up(uint64_t v, uint64_t alignment) {
  const uint64_t mask = alignment - 1;
  if (v > UINT64_MAX - mask) return std::nullopt;
  return (v + mask) & ~mask;
}

std::string format_ne(std::span<const int64_t> ne) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < ne.size(); ++i) os << (i ? ", " : "") << ne[i];
  os << ']';
  return os.str();
}

size_t tensor_nbytes(std::string_view who, std::string_view name, DType type,
                     std::span<const int64_t> ne) {
  if (ne.empty() || ne.size() > 4)
    fail(who, ": tensor '", name, "' has ", ne.size(), " dims (must be 1..4)");
  for (size_t i = 0; i < ne.size(); ++i)
    if (ne[i] < 0) fail(who, ": tensor '", name, "' has negative ne[", i, "] = ", ne[i]);
  // rows = ne[1] * ne[2] * ne[3]; every partial product must fit, even when a
  // dimension is 0, so that row loops elsewhere never see an overflowed count.
  int64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i)
    if (__builtin_mul_overflow(rows, ne[i], &rows))
      fail(who, ": tensor '", name, "' shape ", format_ne(ne), " has more than 2^63 elements");
  int64_t n_elements = 0;
  if (__builtin_mul_overflow(rows, ne[0], &n_elements))
    fail(who, ": tensor '", name, "' shape ", format_ne(ne), " has more than 2^63 elements");
  const auto& tr = traits(type);
  if (ne[0] % tr.block_size != 0)
    fail(who, ": tensor '", name, "' ne[0] = ", ne[0], " is not a multiple of the ", tr.name,
         " block size ", tr.block_size);
  uint64_t row = 0, total = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(ne[0] / tr.block_size), uint64_t{tr.block_bytes}, &row) ||
      __builtin_mul_overflow(row, static_cast<uint64_t>(rows), &total) || total > SIZE_MAX)
    fail(who, ": tensor '", name, "' shape ", format_ne(ne), " of type ", tr.name,
         " needs more than 2^64 bytes");
  return static_cast<size_t>(total);
}

void check_tensor_name(std::string_view who, std::string_view name) {
  if (name.empty()) fail(who, ": tensor with an empty name");
  if (name.size() > kMaxTensorNameBytes)
    fail(who, ": tensor name '", name, "' is ", name.size(), " bytes long (at most ",
         kMaxTensorNameBytes, ")");
}

size_t check_alignment_value(std::string_view who, const Value& v) {
  if (v.type != ValueType::U32)
    fail(who, ": ", kAlignmentKey, " must be u32, found ", value_type_name(v.type));
  const uint64_t a = v.as_u64();
  if (!is_pow2(a)) fail(who, ": ", kAlignmentKey, " = ", a, " is not a nonzero power of two");
  return static_cast<size_t>(a);
}

}  // namespace kestrel::gguf::wire
