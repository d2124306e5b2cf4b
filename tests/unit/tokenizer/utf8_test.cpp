// The lenient UTF-8 rules llama.cpp's tokenizer applies, and the GPT-2 byte map.
#include <gtest/gtest.h>

#include <set>

#include "tokenizer/utf8.h"

namespace kestrel::tok {
namespace {

std::vector<uint32_t> cps(std::string_view s) {
  std::vector<uint32_t> out;
  for (size_t pos = 0; pos < s.size();) out.push_back(utf8_decode_lenient(s, pos));
  return out;
}

TEST(Utf8, LenientDecoding) {
  EXPECT_EQ(cps("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"), (std::vector<uint32_t>{'a', 0xE9, 0x20AC, 0x1F600}));
  // Each byte that starts no valid sequence is one U+FFFD.
  EXPECT_EQ(cps("\x80\xFF" "a\xC3"), (std::vector<uint32_t>{0xFFFD, 0xFFFD, 'a', 0xFFFD}));
  EXPECT_EQ(cps("\xE2\x82" "b"), (std::vector<uint32_t>{0xFFFD, 0xFFFD, 'b'}));
  // Overlongs and surrogates pass, as in llama.cpp; > U+10FFFF does not.
  EXPECT_EQ(cps("\xC0\x80"), (std::vector<uint32_t>{0}));
  EXPECT_EQ(cps("\xED\xA0\x80"), (std::vector<uint32_t>{0xD800}));
  EXPECT_EQ(cps("\xF5\x80\x80\x80").front(), 0xFFFDu);
}

TEST(Utf8, SanitizeAndValidity) {
  EXPECT_EQ(utf8_sanitize("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(utf8_sanitize("\xC0\x80"), std::string(1, '\0'));
  EXPECT_EQ(utf8_sanitize("x\xFE"), "x\xEF\xBF\xBD");
  EXPECT_TRUE(utf8_is_valid("ok \xC3\xA9\xF0\x9F\x98\x80"));
  EXPECT_FALSE(utf8_is_valid("\xC0\x80"));
  EXPECT_FALSE(utf8_is_valid("\xED\xA0\x80"));
  EXPECT_FALSE(utf8_is_valid("\xC3"));
}

TEST(Utf8, IncompleteTail) {
  EXPECT_EQ(utf8_incomplete_tail("ab"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8_incomplete_tail("a\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("\xE2\x82"), 2u);
  EXPECT_EQ(utf8_incomplete_tail("\xC3"), 1u);
  EXPECT_EQ(utf8_incomplete_tail("\x80\x80"), 0u);  // stray continuations never complete
}

TEST(Utf8, Gpt2ByteMapIsABijectionOntoPrintables) {
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) {
    const std::string& s = gpt2_byte_to_utf8()[b];
    EXPECT_TRUE(seen.insert(s).second) << b;
    size_t pos = 0;
    const uint32_t cp = utf8_decode_lenient(s, pos);
    EXPECT_EQ(gpt2_cp_to_byte(cp), b);
    if (b == ' ') EXPECT_EQ(cp, 0x120u);  // 'Ġ'
    if (b == 'A') EXPECT_EQ(cp, uint32_t('A'));
  }
  EXPECT_EQ(gpt2_cp_to_byte(0x20), -1);
  EXPECT_EQ(gpt2_cp_to_byte(0x144), -1);
}

}  // namespace
}  // namespace kestrel::tok
