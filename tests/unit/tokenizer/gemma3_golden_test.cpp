// Gemma 3 (262k SentencePiece "llama" vocab, no space prefix, user-defined
// tokens for whitespace runs and HTML tags) against llama.cpp: the hard
// cases, the first 300 lines of wiki.test.raw, the whole file, pieces, metadata.
#include <gtest/gtest.h>

#include "golden_checks.h"

namespace kestrel::tokfix {
namespace {

class Gemma3Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(gemma3_path())) tok_ = new Tokenizer(load_model_tokenizer(gemma3_path()));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) GTEST_SKIP() << gemma3_path() << " not found (scripts/fetch_models.sh gemma3)";
  }
  static Tokenizer* tok_;
};
Tokenizer* Gemma3Golden::tok_ = nullptr;

TEST_F(Gemma3Golden, Metadata) {
  EXPECT_EQ(tok_->spec().model, "llama");
  check_meta(*tok_, "gemma3");
}

TEST_F(Gemma3Golden, Pieces) { check_pieces(*tok_, "gemma3"); }

TEST_F(Gemma3Golden, HardCases) { check_hard(*tok_, "gemma3"); }

TEST_F(Gemma3Golden, First300WikitextLines) {
  if (!std::filesystem::exists(wikitext_path())) GTEST_SKIP() << wikitext_path() << " not found";
  check_wikitext_lines(*tok_, "gemma3_wikitext300.ids");
}

TEST_F(Gemma3Golden, WholeWikitextFile) {
  if (!std::filesystem::exists(wikitext_path())) GTEST_SKIP() << wikitext_path() << " not found";
  check_wikitext_whole(*tok_, "gemma3");
}

}  // namespace
}  // namespace kestrel::tokfix
