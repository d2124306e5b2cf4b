#pragma once
// A batch of tokens for one forward pass. Tokens of one sequence must appear in
// increasing position order; each sees its own sequence's positions [0, pos].
#include <cstdint>
#include <vector>

namespace kestrel {

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> pos;
  std::vector<int32_t> seq;
  std::vector<uint8_t> want_logits;  // 1 where the caller wants this row's logits
  // 1 where the row is a decode step's token (generated, or a draft of one),
  // not a prompt's: TEAL thins the inputs of these rows only.
  std::vector<uint8_t> generated;

  void add(int32_t token, int32_t position, int32_t sequence, bool logits, bool decoded = false) {
    tokens.push_back(token);
    pos.push_back(position);
    seq.push_back(sequence);
    want_logits.push_back(logits ? 1 : 0);
    generated.push_back(decoded ? 1 : 0);
  }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_logits() const {
    int64_t n = 0;
    for (auto w : want_logits) n += w;
    return n;
  }
  void clear() {
    tokens.clear();
    pos.clear();
    seq.clear();
    want_logits.clear();
    generated.clear();
  }
};

}  // namespace kestrel
