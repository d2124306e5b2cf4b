#include "tokenizer/utf8.h"

namespace kestrel::tok {

namespace {
bool is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }
}  // namespace

uint32_t utf8_decode_lenient(std::string_view s, size_t& pos) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
  const size_t left = s.size() - pos;
  const uint8_t b0 = p[0];
  if (b0 < 0x80) {
    pos += 1;
    return b0;
  }
  // Two-byte lead C0..DF (C0/C1 overlongs included, as llama.cpp accepts them).
  if (b0 >= 0xC0 && b0 < 0xE0 && left >= 2 && is_cont(p[1])) {
    pos += 2;
    return (uint32_t(b0 & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (b0 >= 0xE0 && b0 < 0xF0 && left >= 3 && is_cont(p[1]) && is_cont(p[2])) {
    pos += 3;
    return (uint32_t(b0 & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  if (b0 >= 0xF0 && b0 < 0xF8 && left >= 4 && is_cont(p[1]) && is_cont(p[2]) && is_cont(p[3])) {
    const uint32_t cp = (uint32_t(b0 & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) |
                        (uint32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    if (cp <= 0x10FFFF) {
      pos += 4;
      return cp;
    }
  }
  pos += 1;
  return kReplacementChar;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

bool utf8_is_valid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const auto b0 = uint8_t(s[pos]);
    if (b0 < 0x80) {
      ++pos;
      continue;
    }
    size_t before = pos;
    const uint32_t cp = utf8_decode_lenient(s, pos);
    const size_t n = pos - before;
    if (cp == kReplacementChar && n == 1) return false;
    // Reject what the lenient decoder lets through: overlongs and surrogates.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
  }
  return true;
}

std::string utf8_sanitize(std::string_view s) {
  // Fast path: ASCII runs are copied as they are.
  std::string out;
  out.reserve(s.size() + 8);
  size_t pos = 0;
  while (pos < s.size()) {
    const auto b0 = uint8_t(s[pos]);
    if (b0 < 0x80) {
      out.push_back(char(b0));
      ++pos;
      continue;
    }
    utf8_append(out, utf8_decode_lenient(s, pos));
  }
  return out;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = uint8_t(s[n - back]);
    if (is_cont(b)) continue;
    if (b < 0xC0) return 0;  // ASCII: complete
    const size_t need = b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

const std::array<std::string, 256>& gpt2_byte_to_utf8() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    // Bytes that are printable on their own keep their code point; the rest are
    // numbered in byte order from U+0100 (so that no mapped char is whitespace).
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      utf8_append(t[b], keep ? uint32_t(b) : next++);
    }
    return t;
  }();
  return table;
}

int gpt2_cp_to_byte(uint32_t cp) {
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t{};
    t.fill(-1);
    const auto& fwd = gpt2_byte_to_utf8();
    for (int b = 0; b < 256; ++b) {
      size_t pos = 0;
      t[utf8_decode_lenient(fwd[b], pos)] = int16_t(b);
    }
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

}  // namespace kestrel::tok
