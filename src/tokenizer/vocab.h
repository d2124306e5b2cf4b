#pragma once
// VocabSpec: everything the tokenizer needs, independent of GGUF. A spec read
// from a GGUF file holds exactly what the file says, with llama.cpp's defaults
// filled in for the keys it lacks (see default_vocab_spec).
#include <cstdint>
#include <string>
#include <vector>

namespace kestrel {

namespace gguf {
class File;
}

// Token types as GGUF stores them (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct VocabSpec {
  std::string model;  // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
  std::string pre;    // tokenizer.ggml.pre ("smollm", "llama-bpe", "qwen2", "default", ...)
  std::vector<std::string> tokens;
  std::vector<float> scores;         // empty, or one per token
  std::vector<int32_t> token_types;  // empty (all Normal), or one TokenType per token
  std::vector<std::string> merges;   // BPE only: "left right", rank = index

  // -1 = none. Ids outside [0, n_vocab) are treated as none by the Tokenizer.
  int32_t bos_id = -1, eos_id = -1, eot_id = -1, eom_id = -1, unk_id = -1, sep_id = -1,
          pad_id = -1, mask_id = -1;
  int32_t fim_pre_id = -1, fim_suf_id = -1, fim_mid_id = -1, fim_pad_id = -1, fim_rep_id = -1,
          fim_sep_id = -1;

  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;  // SentencePiece: prepend " " to text that starts a fragment

  std::string chat_template;  // tokenizer.chat_template, may be empty
};

// A spec with llama.cpp's defaults for this tokenizer model and pre-tokenizer:
//  "llama" (SPM): bos 1, eos 2, unk 0, add_bos, add_space_prefix;
//  "gpt2" (BPE):  bos = eos = 11 (llama.cpp's historical default), add_bos only for
//                 the Llama-3 family of pre-tokenizers.
// Throws Error for a model other than "gpt2" / "llama".
VocabSpec default_vocab_spec(const std::string& model, const std::string& pre);

// Reads tokenizer.* metadata. Missing keys keep default_vocab_spec's values; a
// special-token id outside the vocab is ignored (the default stays), as llama.cpp
// does. Throws Error on a missing token list, mismatched array lengths or wrong types.
VocabSpec vocab_spec_from_gguf(const gguf::File& f);

}  // namespace kestrel
