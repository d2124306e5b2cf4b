#include "tokenizer/token_index.h"

#include <cstring>

namespace kestrel::tok {

namespace {
constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;  // odd: multiplication is a bijection
}

uint64_t TokenIndex::hash(std::string_view s) {
  // 8 bytes at a time, multiply-xorshift mixing; not cryptographic, just spread.
  uint64_t h = 0x243F6A8885A308D3ull ^ (s.size() * kMul);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * kMul;
  h ^= h >> 32;
  h *= kMul;
  return h ^ (h >> 29);
}

void TokenIndex::build(const std::vector<std::string>& tokens) {
  tokens_ = &tokens;
  size_t cap = 16;
  while (cap < 2 * tokens.size()) cap *= 2;
  slots_.assign(cap, Slot{0, -1});
  shift_ = 64 - __builtin_ctzll(cap);
  const size_t mask = cap - 1;
  for (size_t id = 0; id < tokens.size(); ++id) {
    const uint64_t h = hash(tokens[id]);
    const uint32_t tag = uint32_t(h);
    for (size_t i = h >> shift_;; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s = {tag, int32_t(id)};
        break;
      }
      if (s.tag == tag && tokens[s.id] == tokens[id]) {
        s.id = int32_t(id);  // repeated text: the later id wins
        break;
      }
    }
  }
}

int32_t TokenIndex::find(std::string_view text) const {
  if (slots_.empty()) return -1;
  const uint64_t h = hash(text);
  const uint32_t tag = uint32_t(h);
  const size_t mask = slots_.size() - 1;
  for (size_t i = h >> shift_;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.id < 0) return -1;
    if (s.tag == tag && (*tokens_)[s.id] == text) return s.id;
  }
}

}  // namespace kestrel::tok
