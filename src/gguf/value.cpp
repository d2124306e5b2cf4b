// Value and Array: type names, checked conversions, equality.
#include <cmath>
#include <limits>

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/wire.h"

namespace kestrel::gguf {

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "unknown";
}

namespace {

// The payload must match the declared type's category; a hand-built Value that
// breaks this is reported rather than reinterpreted.
[[noreturn]] void malformed(const Value& v) {
  fail("malformed ", value_type_name(v.type), " value (payload of another type)");
}

}  // namespace

uint64_t Value::as_u64() const {
  if (wire::is_unsigned_int(type)) {
    if (const auto* u = std::get_if<uint64_t>(&data)) return *u;
  } else if (wire::is_signed_int(type)) {
    if (const auto* i = std::get_if<int64_t>(&data)) {
      if (*i < 0) fail("value ", *i, " (", value_type_name(type), ") is negative, expected an unsigned integer");
      return static_cast<uint64_t>(*i);
    }
  } else {
    fail("expected an unsigned integer, found ", value_type_name(type));
  }
  malformed(*this);
}

int64_t Value::as_i64() const {
  if (wire::is_signed_int(type)) {
    if (const auto* i = std::get_if<int64_t>(&data)) return *i;
  } else if (wire::is_unsigned_int(type)) {
    if (const auto* u = std::get_if<uint64_t>(&data)) {
      if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("value ", *u, " (", value_type_name(type), ") does not fit i64");
      return static_cast<int64_t>(*u);
    }
  } else {
    fail("expected an integer, found ", value_type_name(type));
  }
  malformed(*this);
}

double Value::as_f64() const {
  if (wire::is_float(type)) {
    if (const auto* d = std::get_if<double>(&data)) return *d;
  } else if (wire::is_unsigned_int(type)) {
    if (const auto* u = std::get_if<uint64_t>(&data)) return static_cast<double>(*u);
  } else if (wire::is_signed_int(type)) {
    if (const auto* i = std::get_if<int64_t>(&data)) return static_cast<double>(*i);
  } else {
    fail("expected a number, found ", value_type_name(type));
  }
  malformed(*this);
}

bool Value::as_bool() const {
  if (type != ValueType::BOOL) fail("expected bool, found ", value_type_name(type));
  if (const auto* b = std::get_if<bool>(&data)) return *b;
  malformed(*this);
}

const std::string& Value::as_string() const {
  if (type != ValueType::STRING) fail("expected string, found ", value_type_name(type));
  if (const auto* s = std::get_if<std::string>(&data)) return *s;
  malformed(*this);
}

const Array& Value::as_array() const {
  if (type != ValueType::ARRAY) fail("expected array, found ", value_type_name(type));
  if (const auto* a = std::get_if<Array>(&data)) return *a;
  malformed(*this);
}

bool Value::operator==(const Value& other) const { return type == other.type && data == other.data; }

bool Array::operator==(const Array& other) const {
  return elem_type == other.elem_type && items == other.items;
}

}  // namespace kestrel::gguf
