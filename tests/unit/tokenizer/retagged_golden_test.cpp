// Real vocabularies run through other pre-tokenizer families, against llama.cpp
// given the same vocab with tokenizer.ggml.pre replaced: covers the GPT-2,
// "default" and Llama-3 regexes (and detokenizing with clean_spaces) without
// downloading models that use them.
#include <gtest/gtest.h>

#include "golden_checks.h"

namespace kestrel::tokfix {
namespace {

Tokenizer retagged(const std::filesystem::path& model, const std::string& pre) {
  VocabSpec s = vocab_spec_from_gguf(gguf::File::open(model.string()));
  s.pre = pre;  // the files set add_bos_token, so the family's default does not apply
  return Tokenizer(std::move(s));
}

void run(const std::filesystem::path& model, const std::string& pre, const std::string& tag) {
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " not found (scripts/fetch_models.sh)";
  const Tokenizer tok = retagged(model, pre);
  check_hard(tok, tag);
  if (std::filesystem::exists(wikitext_path())) check_wikitext_lines(tok, tag + "_wikitext100.ids", false);
}

TEST(RetaggedGolden, SmolLM2VocabAsGpt2) { run(smollm2_path(), "gpt-2", "smollm2_as_gpt_2"); }
TEST(RetaggedGolden, SmolLM2VocabAsDefault) { run(smollm2_path(), "default", "smollm2_as_default"); }
TEST(RetaggedGolden, Qwen2VocabAsLlama3) { run(qwen2_path(), "llama-bpe", "qwen2_as_llama_bpe"); }

}  // namespace
}  // namespace kestrel::tokfix
