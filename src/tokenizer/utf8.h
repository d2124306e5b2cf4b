#pragma once
// UTF-8 helpers with llama.cpp's lenient rules, which decide how invalid input
// tokenizes (so they are part of the tokenizer's observable behaviour):
//  - the length of a sequence is read from the top four bits of its first byte;
//  - continuation bytes are checked, but overlong forms and surrogates are accepted;
//  - a byte that starts no valid sequence decodes to U+FFFD and consumes one byte.
// Code points above U+10FFFF (lead bytes F5..F7) make llama.cpp throw out of
// llama_tokenize; we treat their lead byte as invalid instead (one U+FFFD).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace kestrel::tok {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Byte length of the sequence that `lead` starts, from its top four bits (1..4);
// continuation bytes count as 1. The caller clamps it to the bytes left.
inline int utf8_seq_len(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Decodes one code point at s[pos] and advances pos (see the rules above).
uint32_t utf8_decode_lenient(std::string_view s, size_t& pos);

// Appends the UTF-8 encoding of cp (cp <= 0x10FFFF; surrogates are encoded as
// three bytes, as llama.cpp does).
void utf8_append(std::string& out, uint32_t cp);

// Decodes leniently and re-encodes: the text llama.cpp's pre-tokenizer actually
// splits. Valid UTF-8 comes back unchanged.
std::string utf8_sanitize(std::string_view s);

// True when s is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool utf8_is_valid(std::string_view s);

// Number of bytes at the end of s that start an incomplete UTF-8 sequence
// (0 when s ends on a character boundary or with bytes that can never complete).
size_t utf8_incomplete_tail(std::string_view s);

// GPT-2 byte-level alphabet: every byte maps to one printable code point
// (printable Latin-1 bytes map to themselves, the other 68 to U+0100..U+0143).
const std::array<std::string, 256>& gpt2_byte_to_utf8();
// Inverse mapping for one code point; -1 when cp is not in the alphabet.
int gpt2_cp_to_byte(uint32_t cp);

}  // namespace kestrel::tok
