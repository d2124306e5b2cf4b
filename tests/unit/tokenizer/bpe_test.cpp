// Byte-level BPE and the pre-tokenizers on small hand-checked examples (the model
// goldens cover real vocabs; these pin the rules down without a download).
#include <gtest/gtest.h>

#include "fixtures.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace kestrel::tokfix {
namespace {

std::vector<std::string> words(tok::PreFamily f, const std::string& text) {
  tok::PreTokenizer p(f);
  std::vector<size_t> ends;
  p.split(text, ends);
  std::vector<std::string> out;
  size_t b = 0;
  for (size_t e : ends) {
    out.push_back(text.substr(b, e - b));
    b = e;
  }
  return out;
}

using W = std::vector<std::string>;

TEST(PreTokenizer, Gpt2) {
  EXPECT_EQ(words(tok::PreFamily::Gpt2, "Hello world's  end 123!!"),
            (W{"Hello", " world", "'s", " ", " end", " 123", "!!"}));
  // Whitespace before a word leaves its last char to the word; trailing runs stay whole.
  EXPECT_EQ(words(tok::PreFamily::Gpt2, "a \t b   "), (W{"a", " \t", " b", "   "}));
}

TEST(PreTokenizer, DigitsSplitFirst) {
  // StarCoder/SmolLM: each digit is its own word before GPT-2's rules run, and
  // the GPT-2 pass sees the pieces separately (so " 1" cannot form).
  EXPECT_EQ(words(tok::PreFamily::DigitsGpt2, "ab 123"), (W{"ab", " ", "1", "2", "3"}));
}

TEST(PreTokenizer, Llama3AndQwen2) {
  EXPECT_EQ(words(tok::PreFamily::Llama3, "x 1234567 I'M"), (W{"x", " ", "123", "456", "7", " I", "'M"}));
  EXPECT_EQ(words(tok::PreFamily::Qwen2, "x 123"), (W{"x", " ", "1", "2", "3"}));
  // One non-letter may lead a letter run; newlines gather with trailing symbols.
  EXPECT_EQ(words(tok::PreFamily::Llama3, "$abc ...\n\n  \nz"), (W{"$abc", " ...\n\n", "  \n", "z"}));
}

TEST(PreTokenizer, DefaultFamily) {
  // Punctuation runs first, then GPT-2, then digit runs cut into threes.
  EXPECT_EQ(words(tok::PreFamily::Default, "hi, you 12345"), (W{"hi", ",", " you", " ", "123", "45"}));
}

TEST(PreTokenizer, UnicodeClasses) {
  // U+00A0 and U+3000 are whitespace, U+0085 too (PCRE2's own \s lacks it);
  // CJK Extension H (Unicode 15) counts as letters, as in llama.cpp's tables.
  EXPECT_EQ(words(tok::PreFamily::Gpt2, "a\xC2\x85" "b"), (W{"a", "\xC2\x85", "b"}));
  EXPECT_EQ(words(tok::PreFamily::Gpt2, " \xF0\xB1\x8D\x90\xF0\xB1\x8D\x91"), (W{" \xF0\xB1\x8D\x90\xF0\xB1\x8D\x91"}));
  EXPECT_EQ(words(tok::PreFamily::Gpt2, "x\xE3\x80\x80y"), (W{"x", "\xE3\x80\x80", "y"}));
}

TEST(PreTokenizer, SanitizedInvalidInput) {
  // Encoded surrogates survive sanitizing (as in llama.cpp) and must not upset PCRE2.
  const std::string s = tok::utf8_sanitize("a\xED\xA0\x80" "b\xFF");
  EXPECT_EQ(s, "a\xED\xA0\x80" "b\xEF\xBF\xBD");
  EXPECT_EQ(words(tok::PreFamily::Gpt2, s), (W{"a", "\xED\xA0\x80", "b", "\xEF\xBF\xBD"}));
}

// A toy byte-level vocab: the 256 byte symbols, then merge results.
VocabSpec toy(const std::vector<std::string>& merges, const std::string& pre = "gpt-2") {
  VocabSpec s = default_vocab_spec("gpt2", pre);
  for (const auto& b : tok::gpt2_byte_to_utf8()) s.tokens.push_back(b);
  for (const auto& m : merges) {
    const size_t sp = m.find(' ');
    s.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
  }
  s.merges = merges;
  return s;
}

std::vector<std::string> texts(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(t.token_text(id));
  return out;
}

TEST(Bpe, LowestRankFirstThenLeftmost) {
  // Ranks: "a b" 0, "b c" 1, "ab c" 2. In "bcab": a+b (rank 0) first, then b+c,
  // and no merge joins "bc" with "ab".
  const Tokenizer t(toy({"a b", "b c", "ab c"}));
  EXPECT_EQ(texts(t, t.encode("bcab", false, false)), (W{"bc", "ab"}));
  EXPECT_EQ(texts(t, t.encode("abc", false, false)), (W{"abc"}));
  // Equal pairs merge left to right: "aaa" with "a a" -> "aa" + "a".
  const Tokenizer u(toy({"a a"}));
  EXPECT_EQ(texts(u, u.encode("aaa", false, false)), (W{"aa", "a"}));
}

TEST(Bpe, ByteMappingOfSpacesAndNonAscii) {
  // " x" is "Ġx" in GPT-2's alphabet; é (C3 A9) is "Ã©".
  const Tokenizer t(toy({"\xC4\xA0 x", "\xC3\x83 \xC2\xA9"}));
  EXPECT_EQ(texts(t, t.encode(" x\xC3\xA9", false, false)), (W{"\xC4\xA0x", "\xC3\x83\xC2\xA9"}));
  EXPECT_EQ(t.decode(t.encode(" x\xC3\xA9", false, false)), " x\xC3\xA9");
}

TEST(Bpe, IgnoreMergesTakesWholeWordTokens) {
  // Llama-3 vocabs use a word that is a token as is, even with no merge path to it.
  VocabSpec s = toy({"a b"}, "llama-bpe");
  s.tokens.push_back("abc");  // no "ab c" merge
  const Tokenizer t(s);
  EXPECT_EQ(texts(t, t.encode("abc", false, false)), (W{"abc"}));
  const Tokenizer g(toy({"a b"}, "gpt-2"));
  EXPECT_EQ(texts(g, g.encode("abc", false, false)), (W{"ab", "c"}));
  EXPECT_TRUE(t.spec().add_bos);  // the Llama 3 family adds BOS by default
  EXPECT_EQ(t.encode("a", true, false).front(), t.bos());
}

TEST(Bpe, SpecialTokensSplitLongestFirst) {
  VocabSpec s = toy({"a b"});
  s.tokens.push_back("<|x|>");
  s.tokens.push_back("<|x");
  s.token_types.assign(s.tokens.size(), 1);
  s.token_types[s.tokens.size() - 2] = 3;  // control
  s.token_types[s.tokens.size() - 1] = 4;  // user-defined
  const int32_t ctl = int32_t(s.tokens.size()) - 2, user = ctl + 1;
  const Tokenizer t(s);
  EXPECT_EQ(t.encode("<|x|>", false, true), (std::vector<int32_t>{ctl}));
  // Without parse_special only the user-defined token is recognised.
  const auto ids = t.encode("<|x|>", false, false);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), user);
  EXPECT_EQ(t.decode(ids), "<|x|>");
}

}  // namespace
}  // namespace kestrel::tokfix
