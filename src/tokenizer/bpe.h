#pragma once
// Byte-level BPE merging for one pre-tokenized word.
//
// Symbols are ids: a vocab token's id, or an id >= n_vocab for a merge operand or
// result that is not itself a token. A merge is looked up by the pair of symbol
// ids (one hash probe, no string building). Merging repeatedly applies the
// lowest-ranked adjacent pair, the leftmost first among equal ranks, which is
// llama.cpp's (and GPT-2's) order.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/token_index.h"

namespace kestrel::tok {

class BpeMerger {
 public:
  // tokens and token_ids must outlive the merger (token_ids maps each token
  // text to its id; for repeated texts, to the last id, as llama.cpp does).
  BpeMerger(const std::vector<std::string>& tokens, const TokenIndex& token_ids,
            const std::vector<std::string>& merges);

  // Scratch buffers reused across words of one encode call.
  struct Scratch {
    std::vector<int32_t> sid, prev, next;
    struct Cand {
      int32_t rank, left, lsid, rsid, result;
    };
    std::vector<Cand> heap;
    std::string encoded;
  };

  // raw: the word's bytes (before the GPT-2 byte mapping). ignore_merges: emit
  // the word as one token when its mapped text is a token (Llama 3 family).
  void encode_word(std::string_view raw, bool ignore_merges, Scratch& s,
                   std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank, result;
  };
  // Open-addressing table keyed by (left sid << 32) | right sid: the merge lookup
  // is the hot loop of encoding, and std::unordered_map's node chasing and
  // modulo cost a third of the time.
  struct MergeSlot {
    uint64_t key;  // kEmptyKey when free
    Merge merge;
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t(0);
  const Merge* find_merge(uint64_t key) const;
  void insert_merge(uint64_t key, Merge m);
  int32_t symbol_id(std::string_view text);
  void emit(int32_t sid, std::vector<int32_t>& out) const;
  void push_pair(int32_t left, Scratch& s) const;

  const TokenIndex& token_ids_;
  int32_t n_vocab_;
  std::vector<std::string> extra_texts_;  // text of symbol id n_vocab + i
  std::unordered_map<std::string, int32_t> extra_ids_;  // rare: only non-token merge operands
  std::vector<MergeSlot> slots_;  // size: power of two, at most half full
  int shift_ = 64;                // hash: (key * odd constant) >> shift_
  int32_t byte_sid_[256];
};

}  // namespace kestrel::tok
