#pragma once
// Tokenizer internals shared by its translation units (not part of the API).
// Built once by the Tokenizer constructor and immutable afterwards, so one
// instance is shared by copies and used from several threads.
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm.h"
#include "tokenizer/token_index.h"
#include "tokenizer/tokenizer.h"

namespace kestrel::tok {

struct TokenizerImpl {
  VocabSpec spec;
  bool is_spm = false;
  const PreInfo* pre = nullptr;     // BPE only
  TokenIndex index;                 // token text -> id (last id for repeated texts)
  std::vector<uint32_t> attrs;      // TokenAttr bits per token
  std::vector<std::string> pieces;  // token_to_piece(id, render_special = true)
  std::vector<int32_t> specials;    // control/user-defined/unknown ids, longest text first
  std::vector<int32_t> eog;         // sorted
  int32_t eot = -1, eom = -1;       // as given, or found by text
  std::unique_ptr<PreTokenizer> pretok;  // BPE only
  std::unique_ptr<BpeMerger> bpe;        // BPE only
  std::unique_ptr<SpmMerger> spm;        // SPM only

  explicit TokenizerImpl(VocabSpec s);
};

// Special-token rules (tokenizer_special.cpp): derives attrs, eot/eom/fim ids,
// the end-of-generation set and the special-token list from the spec. Needs index.
void derive_special_tokens(TokenizerImpl& t);

// One token's piece with render_special = true (tokenizer_decode.cpp).
std::string make_piece(const TokenizerImpl& t, int32_t id);

}  // namespace kestrel::tok
