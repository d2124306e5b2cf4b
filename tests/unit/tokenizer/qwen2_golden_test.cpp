// Qwen2.5 (152k byte-level BPE, pre-tokenizer "qwen2") against llama.cpp: the hard
// cases, the first 300 lines of wiki.test.raw, the whole file, pieces, metadata.
#include <gtest/gtest.h>

#include "golden_checks.h"

namespace kestrel::tokfix {
namespace {

class Qwen2Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(qwen2_path())) tok_ = new Tokenizer(load_model_tokenizer(qwen2_path()));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) GTEST_SKIP() << qwen2_path() << " not found (scripts/fetch_models.sh qwen2)";
  }
  static Tokenizer* tok_;
};
Tokenizer* Qwen2Golden::tok_ = nullptr;

TEST_F(Qwen2Golden, Metadata) {
  EXPECT_EQ(tok_->spec().pre, "qwen2");
  check_meta(*tok_, "qwen2");
}

TEST_F(Qwen2Golden, Pieces) { check_pieces(*tok_, "qwen2"); }

TEST_F(Qwen2Golden, HardCases) { check_hard(*tok_, "qwen2"); }

TEST_F(Qwen2Golden, First300WikitextLines) {
  if (!std::filesystem::exists(wikitext_path())) GTEST_SKIP() << wikitext_path() << " not found";
  check_wikitext_lines(*tok_, "qwen2_wikitext300.ids");
}

TEST_F(Qwen2Golden, WholeWikitextFile) {
  if (!std::filesystem::exists(wikitext_path())) GTEST_SKIP() << wikitext_path() << " not found";
  check_wikitext_whole(*tok_, "qwen2");
}

}  // namespace
}  // namespace kestrel::tokfix
