#include "tokenizer/vocab.h"

#include <cstdint>

#include "core/error.h"
#include "gguf/gguf.h"
#include "tokenizer/pretokenizer.h"

namespace kestrel {

VocabSpec default_vocab_spec(const std::string& model, const std::string& pre) {
  VocabSpec s;
  s.model = model;
  s.pre = pre;
  if (model == "llama") {
    s.bos_id = 1;
    s.eos_id = 2;
    s.unk_id = 0;
    s.add_bos = true;
    s.add_space_prefix = true;
  } else if (model == "gpt2") {
    s.bos_id = 11;
    s.eos_id = 11;
    const tok::PreInfo* info = tok::find_pre_info(pre);
    s.add_bos = info != nullptr && info->add_bos;
  } else {
    fail("tokenizer: unsupported tokenizer model '", model,
         "' (tokenizer.ggml.model); supported: gpt2 (byte-level BPE), llama (SentencePiece)");
  }
  return s;
}

VocabSpec vocab_spec_from_gguf(const gguf::File& f) {
  const std::string model = f.require_string("tokenizer.ggml.model");
  VocabSpec s = default_vocab_spec(model, f.get_string("tokenizer.ggml.pre").value_or(""));

  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) fail("gguf: missing metadata key 'tokenizer.ggml.tokens'");
  s.tokens = std::move(*tokens);
  const size_t n = s.tokens.size();

  if (auto scores = f.get_f32_array("tokenizer.ggml.scores")) {
    if (scores->size() < n) fail("gguf: tokenizer.ggml.scores has ", scores->size(), " entries for ", n, " tokens");
    s.scores = std::move(*scores);
    s.scores.resize(n);
  }
  if (auto types = f.get_int_array("tokenizer.ggml.token_type")) {
    if (types->size() < n)
      fail("gguf: tokenizer.ggml.token_type has ", types->size(), " entries for ", n, " tokens");
    s.token_types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = (*types)[i];
      s.token_types[i] = (t < INT32_MIN || t > INT32_MAX) ? 0 : int32_t(t);
    }
  }
  if (auto merges = f.get_string_array("tokenizer.ggml.merges")) s.merges = std::move(*merges);

  struct IdKey {
    const char* key;
    int32_t* id;
  };
  const IdKey ids[] = {
      {"tokenizer.ggml.bos_token_id", &s.bos_id},
      {"tokenizer.ggml.eos_token_id", &s.eos_id},
      {"tokenizer.ggml.eot_token_id", &s.eot_id},
      {"tokenizer.ggml.eom_token_id", &s.eom_id},
      {"tokenizer.ggml.unknown_token_id", &s.unk_id},
      {"tokenizer.ggml.seperator_token_id", &s.sep_id},  // sic: llama.cpp's key spelling
      {"tokenizer.ggml.padding_token_id", &s.pad_id},
      {"tokenizer.ggml.mask_token_id", &s.mask_id},
      {"tokenizer.ggml.fim_pre_token_id", &s.fim_pre_id},
      {"tokenizer.ggml.fim_suf_token_id", &s.fim_suf_id},
      {"tokenizer.ggml.fim_mid_token_id", &s.fim_mid_id},
      {"tokenizer.ggml.fim_pad_token_id", &s.fim_pad_id},
      {"tokenizer.ggml.fim_rep_token_id", &s.fim_rep_id},
      {"tokenizer.ggml.fim_sep_token_id", &s.fim_sep_id},
      // older names of the FIM ids
      {"tokenizer.ggml.prefix_token_id", &s.fim_pre_id},
      {"tokenizer.ggml.suffix_token_id", &s.fim_suf_id},
      {"tokenizer.ggml.middle_token_id", &s.fim_mid_id},
  };
  for (const IdKey& k : ids) {
    // A default that does not fit the vocab is dropped; a stored id that does not
    // fit is ignored (llama.cpp warns and keeps the default).
    if (*k.id >= 0 && size_t(*k.id) >= n) *k.id = -1;
    if (auto v = f.get_i64(k.key); v && *v >= 0 && uint64_t(*v) < n) *k.id = int32_t(*v);
  }

  if (auto v = f.get_bool("tokenizer.ggml.add_bos_token")) s.add_bos = *v;
  if (auto v = f.get_bool("tokenizer.ggml.add_eos_token")) s.add_eos = *v;
  if (auto v = f.get_bool("tokenizer.ggml.add_space_prefix")) s.add_space_prefix = *v;
  if (auto v = f.get_string("tokenizer.chat_template")) s.chat_template = std::move(*v);
  return s;
}

}  // namespace kestrel
