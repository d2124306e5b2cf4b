// The SentencePiece path against llama.cpp on a synthetic vocab that ships with
// the repo (tests/golden/tokenizer/spm_vocab.tsv): no download needed.
#include <gtest/gtest.h>

#include "golden_checks.h"

namespace kestrel::tokfix {
namespace {

TEST(SpmGolden, DefaultsMatchLlamaCpp) {
  const Tokenizer tok(spm_spec(false));
  check_meta(tok, "spm");
  check_pieces(tok, "spm");
  check_hard(tok, "spm");
}

TEST(SpmGolden, NoPrefixEosFlavourMatchesLlamaCpp) {
  const Tokenizer tok(spm_spec(true));
  check_meta(tok, "spm_noprefix");
  check_pieces(tok, "spm_noprefix");
  check_hard(tok, "spm_noprefix");
}

TEST(SpmGolden, ScoreOrderAndByteFallback) {
  const Tokenizer tok(spm_spec(false));
  // "▁the" is a learned piece; a character outside the vocab falls back to its
  // UTF-8 bytes as <0xXX> tokens (emoji U+1F600 = F0 9F 98 80).
  const auto ids = tok.encode("the \xF0\x9F\x98\x80", false, false);
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(tok.token_text(ids[0]), "\xE2\x96\x81the");
  const std::vector<std::string> bytes = {"<0xF0>", "<0x9F>", "<0x98>", "<0x80>"};
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(tok.token_text(ids[ids.size() - 4 + i]), bytes[i]);
  EXPECT_EQ(tok.decode(ids), "the \xF0\x9F\x98\x80");  // leading space of "▁the" dropped
}

TEST(SpmGolden, SpecMadeThroughGgufWriterGivesSameTokens) {
  // vocab_spec_from_gguf on a file our writer made from the same vocab: the
  // defaults a "llama" vocab gets when keys are absent must be llama.cpp's.
  const VocabSpec direct = spm_spec(false);
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", direct.tokens);
  w.set_f32_array("tokenizer.ggml.scores", direct.scores);
  w.set_i32_array("tokenizer.ggml.token_type", direct.token_types);
  const auto bytes = w.to_bytes();
  const gguf::File f = gguf::File::parse(bytes);
  const Tokenizer tok(vocab_spec_from_gguf(f));
  check_meta(tok, "spm");
  check_hard(tok, "spm");
}

}  // namespace
}  // namespace kestrel::tokfix
