#pragma once
// Hand-assembled GGUF bytes, written field by field without the Writer, so
// tests can build exactly the malformed files they need and can check the
// Writer's output against an independent encoding of the format.
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace kestrel::gguf::test {

class Raw {
 public:
  std::vector<uint8_t> bytes;

  template <class T>
  Raw& put(T v) {
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
    return *this;
  }
  Raw& u8(uint8_t v) { return put(v); }
  Raw& u32(uint32_t v) { return put(v); }
  Raw& u64(uint64_t v) { return put(v); }
  Raw& str(std::string_view s) {
    u64(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  Raw& zeros(size_t n) {
    bytes.resize(bytes.size() + n, 0);
    return *this;
  }
  Raw& pad_to(size_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
    return *this;
  }

  // magic, version, n_tensors, n_kv
  static Raw header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    Raw r;
    r.bytes = {'G', 'G', 'U', 'F'};
    return std::move(r.u32(version).u64(n_tensors).u64(n_kv));
  }
  // A scalar pair: key, type id, value of `sizeof(T)` bytes.
  template <class T>
  Raw& kv(std::string_view key, uint32_t type, T v) {
    str(key).u32(type);
    return put(v);
  }
  Raw& kv_str(std::string_view key, std::string_view v) { return str(key).u32(8).str(v); }
  Raw& tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
};

}  // namespace kestrel::gguf::test
