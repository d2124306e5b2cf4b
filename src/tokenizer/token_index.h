#pragma once
// Token text -> id lookup: an open-addressing hash table over the vocab's own
// strings (no copies). Lookups sit in every hot loop of encoding and loading a
// 150k-token vocab does ~10^6 of them, so this avoids std::unordered_map's node
// chasing. For texts that occur twice, the last id wins (as in llama.cpp).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::tok {

class TokenIndex {
 public:
  // tokens must outlive the index and stay unmodified.
  void build(const std::vector<std::string>& tokens);
  // -1 when text is not a token.
  int32_t find(std::string_view text) const;

  static uint64_t hash(std::string_view s);

 private:
  struct Slot {
    uint32_t tag;  // high bits of the hash, to skip most string compares
    int32_t id;    // -1 when free
  };
  const std::vector<std::string>* tokens_ = nullptr;
  std::vector<Slot> slots_;  // power-of-two size, at most half full
  int shift_ = 64;
};

}  // namespace kestrel::tok
