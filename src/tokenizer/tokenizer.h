#pragma once
// Text <-> token ids, computing what llama.cpp's llama_tokenize / llama_token_to_piece
// / llama_detokenize compute for the same vocabulary:
//  - "gpt2" vocabs: special-token split, regex pre-tokenizer (by tokenizer.ggml.pre),
//    GPT-2 byte mapping, rank-ordered BPE merges;
//  - "llama" vocabs: special-token split, "▁" space escaping with an optional space
//    prefix, score-ordered SentencePiece merges, <0xXX> byte fallback.
// Also re-exports the rest of the tokenizer module (vocab, streaming, chat templates).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/vocab.h"

namespace kestrel {

namespace tok {
struct TokenizerImpl;  // tokenizer_impl.h
}

// Token attributes, with llama.cpp's bit values (llama_token_attr).
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
};

class Tokenizer {
 public:
  // Throws Error for an unsupported model or pre-tokenizer (naming it and listing
  // the supported ones), an empty vocab, or scores/types/merges that do not fit.
  explicit Tokenizer(VocabSpec spec);

  // add_special: BOS/EOS per the vocab's add_bos/add_eos (like llama_tokenize).
  // parse_special: text of control/unknown tokens such as "<|im_start|>" becomes
  // that token (user-defined tokens are always recognised).
  // Any bytes are accepted; invalid UTF-8 tokenizes as llama.cpp does (U+FFFD).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The raw bytes of one token, like llama_token_to_piece (no space stripping).
  // Control/unknown tokens give "" unless render_special. Throws Error when id is
  // out of range.
  std::string token_to_piece(int32_t id, bool render_special = true) const;

  // Like llama_detokenize: pieces joined; with add_space_prefix the first piece
  // loses one leading space; remove_special drops a leading BOS / trailing EOS
  // (when the vocab adds them); some vocabs clean " ." " 's" etc. Throws Error for
  // an out-of-range id.
  std::string decode(std::span<const int32_t> ids, bool render_special = false,
                     bool remove_special = false) const;

  int32_t n_vocab() const;
  int32_t bos() const;
  int32_t eos() const;
  int32_t eot() const;
  // End of generation: eos, eot, eom and tokens such as <|im_end|>, <|endoftext|>,
  // chosen by llama.cpp's rules.
  bool is_eog(int32_t id) const;
  bool is_control(int32_t id) const;
  uint32_t token_attr(int32_t id) const;        // TokenAttr bits; 0 when out of range
  const std::string& token_text(int32_t id) const;  // vocab text; throws when out of range
  std::vector<int32_t> eog_ids() const;          // sorted

  // The spec as given, except that special ids outside the vocab are -1 and
  // empty token texts are "[EMPTY_<id>]" (as llama.cpp renames them).
  const VocabSpec& spec() const;

 private:
  std::shared_ptr<const tok::TokenizerImpl> impl_;  // immutable, so copies share it
};

}  // namespace kestrel
