#include "tokenizer/bpe.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace kestrel::tok {

namespace {
uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio, odd

// Min-heap order on (rank, left position).
struct CandAfter {
  bool operator()(const BpeMerger::Scratch::Cand& a, const BpeMerger::Scratch::Cand& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  }
};
}  // namespace

BpeMerger::BpeMerger(const std::vector<std::string>& tokens, const TokenIndex& token_ids,
                     const std::vector<std::string>& merges)
    : token_ids_(token_ids), n_vocab_(int32_t(tokens.size())) {
  const auto& bytes = gpt2_byte_to_utf8();
  for (int b = 0; b < 256; ++b) byte_sid_[b] = symbol_id(bytes[b]);
  size_t cap = 16;
  while (cap < 2 * merges.size()) cap *= 2;
  slots_.assign(cap, MergeSlot{kEmptyKey, {0, 0}});
  shift_ = 64 - __builtin_ctzll(cap);
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string_view m = merges[i];
    // "left right", split at the first space after the first char (a left
    // operand may itself be a lone space in non-byte-level vocabs).
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos) continue;  // can never apply
    const std::string_view left = m.substr(0, sp), right = m.substr(sp + 1);
    const int32_t l = symbol_id(left), r = symbol_id(right);
    // The first listing of a pair wins, as in llama.cpp.
    if (find_merge(pair_key(l, r)) != nullptr) continue;
    joined.assign(left);
    joined += right;
    insert_merge(pair_key(l, r), Merge{int32_t(i), symbol_id(joined)});
  }
}

const BpeMerger::Merge* BpeMerger::find_merge(uint64_t key) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = (key * kHashMul) >> shift_;; i = (i + 1) & mask) {
    const MergeSlot& s = slots_[i];
    if (s.key == key) return &s.merge;
    if (s.key == kEmptyKey) return nullptr;
  }
}

void BpeMerger::insert_merge(uint64_t key, Merge m) {
  const size_t mask = slots_.size() - 1;
  size_t i = (key * kHashMul) >> shift_;
  while (slots_[i].key != kEmptyKey) i = (i + 1) & mask;
  slots_[i] = {key, m};
}

int32_t BpeMerger::symbol_id(std::string_view text) {
  if (const int32_t id = token_ids_.find(text); id >= 0) return id;
  auto [it, inserted] = extra_ids_.emplace(std::string(text), n_vocab_ + int32_t(extra_texts_.size()));
  if (inserted) extra_texts_.emplace_back(text);
  return it->second;
}

void BpeMerger::emit(int32_t sid, std::vector<int32_t>& out) const {
  if (sid < n_vocab_) {
    out.push_back(sid);
    return;
  }
  // Not a token: llama.cpp looks up each byte of the mapped text as a one-byte
  // token and silently drops the bytes that are not tokens.
  for (char c : extra_texts_[sid - n_vocab_]) {
    if (const int32_t id = token_ids_.find(std::string_view(&c, 1)); id >= 0) out.push_back(id);
  }
}

void BpeMerger::push_pair(int32_t left, Scratch& s) const {
  if (left < 0) return;
  const int32_t right = s.next[left];
  if (right < 0) return;
  const Merge* m = find_merge(pair_key(s.sid[left], s.sid[right]));
  if (m == nullptr) return;
  s.heap.push_back({m->rank, left, s.sid[left], s.sid[right], m->result});
  std::push_heap(s.heap.begin(), s.heap.end(), CandAfter{});
}

void BpeMerger::encode_word(std::string_view raw, bool ignore_merges, Scratch& s,
                            std::vector<int32_t>& out) const {
  const int32_t n = int32_t(raw.size());
  if (n == 0) return;
  if (ignore_merges) {
    s.encoded.clear();
    const auto& bytes = gpt2_byte_to_utf8();
    for (char c : raw) s.encoded += bytes[uint8_t(c)];
    if (const int32_t id = token_ids_.find(s.encoded); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (n == 1) {
    emit(byte_sid_[uint8_t(raw[0])], out);
    return;
  }

  s.sid.resize(n);
  s.prev.resize(n);
  s.next.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    s.sid[i] = byte_sid_[uint8_t(raw[i])];
    s.prev[i] = i - 1;
    s.next[i] = i + 1 < n ? i + 1 : -1;
  }
  s.heap.clear();
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i, s);

  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), CandAfter{});
    const Scratch::Cand c = s.heap.back();
    s.heap.pop_back();
    const int32_t l = c.left;
    const int32_t r = s.next[l];
    // Stale when either side has changed since the pair was queued. A merged-away
    // symbol is marked with sid -1 and is never anyone's next.
    if (s.sid[l] != c.lsid || r < 0 || s.sid[r] != c.rsid) continue;
    s.sid[l] = c.result;
    s.sid[r] = -1;
    s.next[l] = s.next[r];
    if (s.next[r] >= 0) s.prev[s.next[r]] = l;
    push_pair(s.prev[l], s);
    push_pair(l, s);
  }
  for (int32_t i = 0; i >= 0; i = s.next[i]) emit(s.sid[i], out);
}

}  // namespace kestrel::tok
