// SmolLM2-135M (byte-level BPE, pre-tokenizer "smollm") against llama.cpp: every
// line of wiki.test.raw, the whole file, the hard cases, pieces and metadata.
#include <gtest/gtest.h>

#include "golden_checks.h"

namespace kestrel::tokfix {
namespace {

class SmolLM2Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(smollm2_path())) tok_ = new Tokenizer(load_model_tokenizer(smollm2_path()));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) GTEST_SKIP() << smollm2_path() << " not found (scripts/fetch_models.sh)";
  }
  static Tokenizer* tok_;
};
Tokenizer* SmolLM2Golden::tok_ = nullptr;

TEST_F(SmolLM2Golden, Metadata) {
  EXPECT_EQ(tok_->spec().pre, "smollm");
  check_meta(*tok_, "smollm2");
}

TEST_F(SmolLM2Golden, Pieces) { check_pieces(*tok_, "smollm2"); }

TEST_F(SmolLM2Golden, HardCases) { check_hard(*tok_, "smollm2"); }

TEST_F(SmolLM2Golden, EveryWikitextLine) {
  if (!std::filesystem::exists(wikitext_path())) GTEST_SKIP() << wikitext_path() << " not found";
  check_wikitext_lines(*tok_, "smollm2_wikitext.ids");
}

TEST_F(SmolLM2Golden, WholeWikitextFile) {
  if (!std::filesystem::exists(wikitext_path())) GTEST_SKIP() << wikitext_path() << " not found";
  check_wikitext_whole(*tok_, "smollm2");
}

TEST_F(SmolLM2Golden, ChatPromptRoundTrip) {
  const std::string prompt = apply_chat_template(tok_->spec().chat_template, {{"user", "Hi!"}}, true);
  EXPECT_EQ(prompt, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
  const auto ids = tok_->encode(prompt, true, true);
  EXPECT_EQ(ids.front(), 1);  // <|im_start|> parsed as its control token
  EXPECT_TRUE(tok_->is_eog(2));
  EXPECT_EQ(tok_->decode(ids, true), prompt);
  EXPECT_EQ(tok_->decode(ids, false), "user\nHi!\nassistant\n");
}

}  // namespace
}  // namespace kestrel::tokfix
