#pragma once
// SentencePiece-style (BPE with scores) merging, as llama.cpp's "llama" vocab type
// does it: start from UTF-8 characters, repeatedly merge the adjacent pair whose
// concatenation is the highest-scoring token (leftmost among equal scores), then
// emit each final piece as its token, or as <0xXX> byte tokens when it is none.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/token_index.h"

namespace kestrel::tok {

class SpmMerger {
 public:
  // All references must outlive the merger. unk_id is used for a byte that has
  // no byte token (llama.cpp would throw there); -1 drops it.
  SpmMerger(const std::vector<float>& scores, const TokenIndex& token_ids, int32_t unk_id);

  struct Scratch {
    struct Sym {
      int32_t off, len, prev, next;
    };
    std::vector<Sym> syms;
    struct Cand {
      float score;
      int32_t left, right, size;
    };
    std::vector<Cand> heap;
  };

  // text: already escaped (spaces replaced by U+2581, prefix added by the caller).
  void encode(std::string_view text, Scratch& s, std::vector<int32_t>& out) const;

 private:
  void push_pair(std::string_view text, int32_t left, int32_t right, Scratch& s) const;
  void emit_bytes(std::string_view piece, std::vector<int32_t>& out) const;

  const std::vector<float>& scores_;
  const TokenIndex& token_ids_;
  int32_t byte_token_[256];
};

}  // namespace kestrel::tok
