#pragma once
// Streams generated text token by token without ever cutting a UTF-8 character:
// the bytes of a character that is still incomplete are held back until the
// token that completes it arrives (or until flush).
#include <cstdint>
#include <string>

namespace kestrel {

class Tokenizer;

class StreamDecoder {
 public:
  // The tokenizer must outlive the decoder. Control tokens render as nothing
  // unless render_special.
  explicit StreamDecoder(const Tokenizer& tok, bool render_special = false);

  // Appends the token's piece; returns the text that is now complete.
  // Throws Error for an out-of-range id.
  std::string push(int32_t id);
  // Returns whatever is held back (possibly an incomplete character) and resets.
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool render_special_;
  std::string pending_;
};

}  // namespace kestrel
