// Token ids back to text: per-token pieces and llama_detokenize's joining rules.
#include <cstdio>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace kestrel {

namespace {

constexpr uint32_t kAttrSpecial = kAttrControl | kAttrUnknown;

// "<0xAB>" -> 0xAB (characters 3 and 4 as hex); -1 when the text is not like that.
int byte_token_value(const std::string& text) {
  if (text.size() < 5) return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(text[3]), lo = hex(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// GPT-2 byte-level text back to bytes. A code point outside the 256-char alphabet
// becomes "[UNK_BYTE_0x<its utf-8 in hex><the whole token text>]", as llama.cpp writes it.
std::string gpt2_unmap(const std::string& text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const uint32_t cp = tok::utf8_decode_lenient(text, pos);
    const int b = tok::gpt2_cp_to_byte(cp);
    if (b >= 0) {
      out.push_back(char(b));
      continue;
    }
    std::string utf8;
    tok::utf8_append(utf8, cp);
    out += "[UNK_BYTE_0x";
    for (char c : utf8) {
      char hex[3];
      std::snprintf(hex, sizeof(hex), "%02x", unsigned(uint8_t(c)));
      out += hex;
    }
    out += text;
    out += "]";
  }
  return out;
}

std::string spm_unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

// llama.cpp's clean-up of detokenized text for vocabs with clean_spaces, in three
// passes over the bytes: " ?" " !" " ." " ," lose the space; a lone "'" between
// spaces loses both spaces; " 's" " 'm" " 're" " 've" lose the space.
void clean_spaces(std::string& s) {
  if (s.empty()) return;
  // Each pass writes s[0..w) in place while reading ahead of it; reads of s[i-1]
  // and s[i+1] see input bytes (except the one marked below), as in the original.
  size_t n = s.size(), w = 1;
  for (size_t i = 1; i < n; ++i) {
    const char x = s[i];
    if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --w;
    s[w++] = x;
  }
  n = w;
  w = 1;
  for (size_t i = 1; i < n; ++i) {
    const char x = s[i];
    if (x == '\'' && i + 1 < n && s[i - 1] == ' ' && s[i + 1] == ' ') {
      --w;
      s[++i] = '\0';  // skips the next space; the next byte then sees a NUL before it
    }
    s[w++] = x;
  }
  n = w;
  w = 1;
  for (size_t i = 1; i < n; ++i) {
    const char x = s[i];
    if (s[i - 1] == ' ' && x == '\'' && i + 1 < n) {
      const char x1 = s[i + 1];
      if (x1 == 's' || x1 == 'm') {
        --w;
      } else if (i + 2 < n) {
        const char x2 = s[i + 2];
        if ((x1 == 'r' || x1 == 'v') && x2 == 'e') --w;
      }
    }
    s[w++] = x;
  }
  s.resize(w);
}

}  // namespace

std::string tok::make_piece(const TokenizerImpl& t, int32_t id) {
  const uint32_t attr = t.attrs[id];
  const std::string& text = t.spec.tokens[id];
  if (attr & (kAttrSpecial | kAttrUserDefined)) return text;
  if (attr & kAttrNormal) return t.is_spm ? spm_unescape(text) : gpt2_unmap(text);
  if (attr & kAttrByte) {
    const int b = byte_token_value(text);
    return b < 0 ? std::string() : std::string(1, char(b));
  }
  return {};  // unused / undefined tokens render as nothing
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const tok::TokenizerImpl& t = *impl_;
  if (id < 0 || id >= n_vocab()) fail("tokenizer: token id ", id, " is out of range [0, ", n_vocab(), ")");
  if (!render_special && (t.attrs[id] & kAttrSpecial)) return {};
  return t.pieces[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special, bool remove_special) const {
  const tok::TokenizerImpl& t = *impl_;
  for (int32_t id : ids)
    if (id < 0 || id >= n_vocab()) fail("tokenizer: token id ", id, " is out of range [0, ", n_vocab(), ")");
  bool strip_space = t.spec.add_space_prefix;
  if (remove_special && t.spec.add_bos && !ids.empty() && ids.front() == t.spec.bos_id) {
    strip_space = false;
    ids = ids.subspan(1);
  }
  if (remove_special && t.spec.add_eos && !ids.empty() && ids.back() == t.spec.eos_id)
    ids = ids.first(ids.size() - 1);

  std::string out;
  for (int32_t id : ids) {
    const bool hidden = !render_special && (t.attrs[id] & kAttrSpecial);
    const std::string& piece = t.pieces[id];
    // Only the first token may lose a leading space, even if it renders as nothing.
    const size_t skip = (strip_space && !hidden && !piece.empty() && piece[0] == ' ') ? 1 : 0;
    strip_space = false;
    if (!hidden) out.append(piece, skip);
  }
  if (!t.is_spm && t.pre->clean_spaces) clean_spaces(out);
  return out;
}

}  // namespace kestrel
