#pragma once
// Byte-level BPE pre-tokenizers: the regex passes that cut text into words before
// merging, chosen by tokenizer.ggml.pre. Each pass splits every piece left by the
// previous pass into its matches and the gaps between them (a pass's lookaheads
// see only the piece, not its neighbours). Matching uses PCRE2 (UTF + UCP, JIT).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::tok {

// The regex families llama.cpp uses for the pre-tokenizer names we support.
enum class PreFamily {
  Default,    // punctuation runs, then GPT-2, then digit runs, then 3-digit groups
  Gpt2,       // GPT-2's regex
  DigitsGpt2, // every digit alone, then GPT-2 (StarCoder, SmolLM, Refact, ...)
  Llama3,     // Llama 3 / tiktoken cl100k regex (digits in groups of up to 3)
  Qwen2,      // Llama 3's regex with single digits
};

// What a tokenizer.ggml.pre name implies besides its regexes.
struct PreInfo {
  std::string_view name;
  PreFamily family;
  bool clean_spaces;   // detokenize drops the space in " ." " 's" etc.
  bool ignore_merges;  // a word that is itself a token is not merged
  bool add_bos;        // llama.cpp's default for tokenizer.ggml.add_bos_token
};

// nullptr when the name is not one we support. "" means "default", as in llama.cpp.
const PreInfo* find_pre_info(std::string_view name);
// The supported names, for error messages.
std::string supported_pre_names();

class PreTokenizer {
 public:
  // Throws Error when a pattern fails to compile (a bug, but reported, not aborted).
  explicit PreTokenizer(PreFamily family);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Splits text into words. `text` must come from utf8_sanitize (valid UTF-8,
  // except that it may hold encoded surrogates). On return `ends` holds each
  // word's end offset in order; word i is [ends[i-1], ends[i]), word 0 starts at 0.
  // Thread-safe.
  void split(std::string_view text, std::vector<size_t>& ends) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kestrel::tok
