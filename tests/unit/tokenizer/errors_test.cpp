// Bad input gives kestrel::Error naming the problem, never a crash.
#include <gtest/gtest.h>

#include "core/error.h"
#include "fixtures.h"
#include "tokenizer/utf8.h"
#include "unit/error_text.h"

namespace kestrel::tokfix {
namespace {

using kestrel::testing::error_of;

// A minimal byte-level BPE spec: the 256 byte symbols and one merge.
VocabSpec toy_bpe(const std::string& pre) {
  VocabSpec s = default_vocab_spec("gpt2", pre);
  for (const auto& b : tok::gpt2_byte_to_utf8()) s.tokens.push_back(b);
  s.tokens.push_back("ab");
  s.merges = {"a b"};
  return s;
}

TEST(TokenizerErrors, UnknownPreTokenizerIsNamed) {
  const std::string msg = error_of([] { Tokenizer t(toy_bpe("no-such-pre")); });
  EXPECT_NE(msg.find("'no-such-pre'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("smollm"), std::string::npos) << msg;  // lists the supported names
}

TEST(TokenizerErrors, UnknownModelIsNamed) {
  VocabSpec s = toy_bpe("gpt-2");
  s.model = "bert";
  const std::string msg = error_of([&] { Tokenizer t(s); });
  EXPECT_NE(msg.find("'bert'"), std::string::npos) << msg;
  EXPECT_THROW(default_vocab_spec("t5", ""), Error);
}

TEST(TokenizerErrors, InconsistentSpecs) {
  VocabSpec empty = default_vocab_spec("llama", "");
  EXPECT_THROW(Tokenizer{empty}, Error);
  VocabSpec no_merges = toy_bpe("gpt-2");
  no_merges.merges.clear();
  EXPECT_THROW(Tokenizer{no_merges}, Error);
  VocabSpec short_scores = spm_spec(false);
  short_scores.scores.resize(10);
  EXPECT_THROW(Tokenizer{short_scores}, Error);
  VocabSpec short_types = spm_spec(false);
  short_types.token_types.resize(10);
  EXPECT_THROW(Tokenizer{short_types}, Error);
}

TEST(TokenizerErrors, OutOfRangeIdsInDecode) {
  const Tokenizer tok(spm_spec(false));
  const std::vector<int32_t> bad = {5, tok.n_vocab()};
  const std::string msg = error_of([&] { tok.decode(bad); });
  EXPECT_NE(msg.find(std::to_string(tok.n_vocab())), std::string::npos) << msg;
  const std::vector<int32_t> negative = {-1};
  EXPECT_THROW(tok.decode(negative), Error);
  EXPECT_THROW(tok.token_to_piece(-7), Error);
  EXPECT_THROW(tok.token_text(1 << 30), Error);
  EXPECT_EQ(tok.token_attr(-1), 0u);
}

TEST(TokenizerErrors, AddBosWithoutBosToken) {
  VocabSpec s = spm_spec(false);
  s.bos_id = -1;
  const Tokenizer tok(s);
  EXPECT_THROW(tok.encode("x", true, false), Error);
  EXPECT_NO_THROW(tok.encode("x", false, false));
}

TEST(TokenizerErrors, OutOfRangeSpecialIdsAreDropped) {
  // gpt2 vocabs default to BOS = EOS = 11 (llama.cpp's default), which exists in
  // this 257-token vocab; an id past the end becomes "none".
  VocabSpec s = toy_bpe("gpt-2");
  s.eos_id = 100000;
  const Tokenizer tok(s);
  EXPECT_EQ(tok.eos(), -1);
  EXPECT_EQ(tok.bos(), 11);
}

TEST(TokenizerErrors, ArbitraryBytesNeverThrow) {
  const Tokenizer spm(spm_spec(false));
  const Tokenizer bpe(toy_bpe("llama-bpe"));
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk.push_back(char((i * 167 + (i >> 3)) & 0xFF));
  for (const Tokenizer* t : {&spm, &bpe}) {
    for (size_t len : {size_t(1), size_t(7), size_t(100), junk.size()}) {
      const auto ids = t->encode(std::string_view(junk).substr(0, len), true, true);
      EXPECT_FALSE(ids.empty());
      EXPECT_NO_THROW(t->decode(ids, true));
    }
  }
}

}  // namespace
}  // namespace kestrel::tokfix
