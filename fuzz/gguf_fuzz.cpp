// libFuzzer target for the GGUF reader: any byte string must either parse or
// throw kestrel::Error. Whatever parses is walked completely (every value,
// every getter, every tensor byte) so the sanitizers see any bad pointer.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "gguf/gguf.h"

namespace {

using kestrel::gguf::File;
using kestrel::gguf::Value;
using kestrel::gguf::ValueType;

uint64_t walk_value(const Value& v) {
  uint64_t h = static_cast<uint64_t>(v.type);
  switch (v.type) {
    case ValueType::STRING: return h + v.as_string().size();
    case ValueType::ARRAY:
      for (const Value& item : v.as_array().items) h += walk_value(item);
      return h;
    case ValueType::BOOL: return h + v.as_bool();
    default: return h + static_cast<uint64_t>(v.as_f64() != 0.0);
  }
}

// Each getter either converts or throws Error; both are fine.
template <class F>
void tolerate(F&& f) {
  try {
    f();
  } catch (const kestrel::Error&) {
  }
}

uint64_t walk(const File& f) {
  uint64_t h = f.version() + f.alignment() + f.file_size() + f.data_offset();
  for (const auto& kv : f.metadata()) {
    const std::string& key = kv.first;  // named, not a structured binding: clang 14 lambdas cannot capture those
    const Value& value = kv.second;
    h += walk_value(value);
    tolerate([&] { h += f.get_u64(key).value_or(0); });
    tolerate([&] { h += static_cast<uint64_t>(f.get_i64(key).value_or(0)); });
    tolerate([&] { h += f.get_f64(key).value_or(0) != 0; });
    tolerate([&] { h += f.get_bool(key).value_or(false); });
    tolerate([&] { h += f.get_string(key).value_or("").size(); });
    tolerate([&] { h += f.get_string_array(key).value_or(std::vector<std::string>{}).size(); });
    tolerate([&] { h += f.get_f32_array(key).value_or(std::vector<float>{}).size(); });
    tolerate([&] { h += f.get_int_array(key).value_or(std::vector<int64_t>{}).size(); });
    h += f.find(key) == &value;
  }
  for (const auto& t : f.tensors()) {
    h += static_cast<uint64_t>(t.n_elements()) + t.offset;
    for (size_t i = 0; i < t.nbytes; ++i) h += t.data[i];
    h += f.find_tensor(t.name) == &t;
  }
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const File f = File::parse(std::span<const uint8_t>(data, size));
    volatile uint64_t sink = walk(f);
    (void)sink;
  } catch (const kestrel::Error&) {
  }
  return 0;
}
