#pragma once
// Touches every metadata value and every tensor byte of a parsed File, so that
// the sanitizers see any pointer the reader got wrong. Returns a checksum so
// the compiler cannot drop the reads.
#include <cstdint>

#include "gguf/gguf.h"

namespace kestrel::gguf::test {

inline uint64_t walk_value(const Value& v) {
  uint64_t h = static_cast<uint64_t>(v.type);
  switch (v.type) {
    case ValueType::STRING: return h + v.as_string().size();
    case ValueType::ARRAY:
      for (const Value& item : v.as_array().items) h += walk_value(item);
      return h;
    case ValueType::BOOL: return h + v.as_bool();
    default: return h + (v.as_f64() != 0.0);
  }
}

inline uint64_t walk(const File& f) {
  uint64_t h = f.version() + f.alignment() + f.file_size();
  for (const auto& [key, value] : f.metadata()) h += key.size() + walk_value(value);
  for (const auto& t : f.tensors()) {
    h += static_cast<uint64_t>(t.n_elements());
    for (size_t i = 0; i < t.nbytes; ++i) h += t.data[i];
  }
  return h;
}

}  // namespace kestrel::gguf::test
