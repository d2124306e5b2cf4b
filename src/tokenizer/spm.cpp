#include "tokenizer/spm.h"

#include <algorithm>
#include <cstdio>

#include "tokenizer/utf8.h"

namespace kestrel::tok {

namespace {
// Max-heap order on score, then min on the left position.
struct CandBefore {
  bool operator()(const SpmMerger::Scratch::Cand& a, const SpmMerger::Scratch::Cand& b) const {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
  }
};
}  // namespace

SpmMerger::SpmMerger(const std::vector<float>& scores, const TokenIndex& token_ids, int32_t unk_id)
    : scores_(scores), token_ids_(token_ids) {
  for (int b = 0; b < 256; ++b) {
    // "<0xAB>" (upper-case hex) first, then the byte itself as a one-char token.
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    int32_t id = token_ids_.find(std::string_view(name, 6));
    if (id < 0) {
      const char c = char(b);
      id = token_ids_.find(std::string_view(&c, 1));
    }
    byte_token_[b] = id >= 0 ? id : unk_id;
  }
}

void SpmMerger::push_pair(std::string_view text, int32_t left, int32_t right, Scratch& s) const {
  if (left < 0 || right < 0) return;
  const auto& l = s.syms[left];
  const auto& r = s.syms[right];
  // Symbols are contiguous, so the pair's text is one slice of the input.
  const std::string_view joined = text.substr(l.off, l.len + r.len);
  const int32_t id = token_ids_.find(joined);
  if (id < 0) return;
  const float score = size_t(id) < scores_.size() ? scores_[id] : 0.0f;
  s.heap.push_back({score, left, right, l.len + r.len});
  std::push_heap(s.heap.begin(), s.heap.end(), CandBefore{});
}

void SpmMerger::emit_bytes(std::string_view piece, std::vector<int32_t>& out) const {
  for (char c : piece) {
    const int32_t id = byte_token_[uint8_t(c)];
    if (id >= 0) out.push_back(id);
  }
}

void SpmMerger::encode(std::string_view text, Scratch& s, std::vector<int32_t>& out) const {
  s.syms.clear();
  s.heap.clear();
  // One symbol per character, its length read from the lead byte (lenient).
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min<size_t>(utf8_seq_len(uint8_t(text[off])), text.size() - off);
    const int32_t idx = int32_t(s.syms.size());
    s.syms.push_back({int32_t(off), int32_t(len), idx - 1, -1});
    if (idx > 0) s.syms[idx - 1].next = idx;
    off += len;
  }
  for (int32_t i = 1; i < int32_t(s.syms.size()); ++i) push_pair(text, i - 1, i, s);

  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), CandBefore{});
    const Scratch::Cand c = s.heap.back();
    s.heap.pop_back();
    auto& l = s.syms[c.left];
    auto& r = s.syms[c.right];
    // A side that grew or was merged away makes the pair stale.
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.size) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) s.syms[r.next].prev = c.left;
    push_pair(text, l.prev, c.left, s);
    push_pair(text, c.left, l.next, s);
  }

  for (int32_t i = s.syms.empty() ? -1 : 0; i >= 0; i = s.syms[i].next) {
    const std::string_view piece = text.substr(s.syms[i].off, s.syms[i].len);
    const int32_t id = token_ids_.find(piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      // Only single characters can get here: every merge result is a token.
      emit_bytes(piece, out);
    }
  }
}

}  // namespace kestrel::tok
