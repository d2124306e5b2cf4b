// File's typed metadata getters. Value's conversions say what went wrong; here
// the key is put in front so the message names it.
#include <cmath>
#include <limits>

#include "core/error.h"
#include "gguf/gguf.h"

namespace kestrel::gguf {
namespace {

template <class F>
auto convert(std::string_view key, const Value* v, F&& f) -> std::optional<decltype(f(*v))> {
  if (v == nullptr) return std::nullopt;
  try {
    return f(*v);
  } catch (const Error& e) {
    fail("gguf: metadata key '", key, "': ", e.what());
  }
}

const Array& array_of(const Value& v, std::string_view elem_desc, bool (*accepts)(ValueType)) {
  const Array& a = v.as_array();
  if (!accepts(a.elem_type))
    fail("expected array of ", elem_desc, ", found array of ", value_type_name(a.elem_type));
  return a;
}

// Converting a finite double beyond float's range is undefined; say so instead.
float to_f32(double d) {
  if (std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max())
    fail("value ", d, " does not fit f32");
  return static_cast<float>(d);
}

bool is_string(ValueType t) { return t == ValueType::STRING; }
bool is_number(ValueType t) {
  return t != ValueType::STRING && t != ValueType::ARRAY && t != ValueType::BOOL;
}
bool is_integer(ValueType t) { return is_number(t) && t != ValueType::F32 && t != ValueType::F64; }

// Element conversions report the element index.
template <class Out, class F>
std::vector<Out> map_items(const Array& a, F&& f) {
  std::vector<Out> out;
  out.reserve(a.items.size());
  for (size_t i = 0; i < a.items.size(); ++i) {
    try {
      out.push_back(f(a.items[i]));
    } catch (const Error& e) {
      fail("element ", i, ": ", e.what());
    }
  }
  return out;
}

}  // namespace

std::optional<uint64_t> File::get_u64(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) { return v.as_u64(); });
}

std::optional<int64_t> File::get_i64(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) { return v.as_i64(); });
}

std::optional<double> File::get_f64(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) { return v.as_f64(); });
}

std::optional<bool> File::get_bool(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) { return v.as_bool(); });
}

std::optional<std::string> File::get_string(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) { return v.as_string(); });
}

std::optional<std::vector<std::string>> File::get_string_array(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) {
    const Array& a = array_of(v, "string", is_string);
    return map_items<std::string>(a, [](const Value& x) { return x.as_string(); });
  });
}

// Any numeric element type is accepted (scores are f32 in practice); values are
// rounded to float.
std::optional<std::vector<float>> File::get_f32_array(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) {
    const Array& a = array_of(v, "numbers", is_number);
    return map_items<float>(a, [](const Value& x) { return to_f32(x.as_f64()); });
  });
}

// Any integer element type whose values fit int64.
std::optional<std::vector<int64_t>> File::get_int_array(std::string_view key) const {
  return convert(key, find(key), [](const Value& v) {
    const Array& a = array_of(v, "integers", is_integer);
    return map_items<int64_t>(a, [](const Value& x) { return x.as_i64(); });
  });
}

uint64_t File::require_u64(std::string_view key) const {
  auto v = get_u64(key);
  if (!v) fail("gguf: missing metadata key '", key, "'");
  return *v;
}

std::string File::require_string(std::string_view key) const {
  auto v = get_string(key);
  if (!v) fail("gguf: missing metadata key '", key, "'");
  return *v;
}

}  // namespace kestrel::gguf
