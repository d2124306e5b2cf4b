#pragma once
// Long-document perplexity (`kestrel longeval --ppl`), the second
// long-context measure beside pass-key retrieval: WikiText-2 articles joined
// into documents of min_tokens to max_tokens tokens, each evaluated in chunks
// on one Session, so that KV-Compress (the kvcompress and kv_budget switches)
// evicts between chunks exactly as it does between prompts; every token from
// the end of the first chunk on is scored against its predecessors' logits.
// PPL = exp(mean NLL) over the scored tokens, with the KV bytes the cache held.
//
// A rate without a budget would compound here (applied after every chunk to
// what is left, kv/kv_compress.h), so a rate R becomes the budget
// ceil(document tokens / R): the cache ends each document holding 1/R of it,
// the same number of blocks for the metric and for window. With --kv-budget
// that budget is used as given (and the rate is not).
//
// WikiText-2's test file is evaluation text: this reads it, never trains on it.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "switches/engine_config.h"

namespace kestrel {

// The articles of a WikiText file: each starts at a level-1 heading line
// (" = Title = "; " = = Section = = " lines are inside an article).
std::vector<std::string> wikitext_articles(std::string_view text);

// Documents of consecutive articles, tokenized (BOS per the vocab): articles
// are joined until a document has at least min_tokens, and it is cut at
// max_tokens; a last one shorter than min_tokens is dropped. At most max_docs
// (<= 0: all).
std::vector<std::vector<int32_t>> join_documents(const Tokenizer& tok, std::span<const std::string> articles,
                                                 int64_t min_tokens, int64_t max_tokens, int max_docs);

struct LongPplOptions {
  int64_t chunk = 512;  // tokens per evaluation (compression runs after each)
  int n_batch = 512;    // tokens per forward pass
  EngineConfig engine;  // with kvcompress / kv_budget
};

struct LongPplDoc {
  int64_t tokens = 0;
  int64_t scored = 0;
  double nll_sum = 0.0;
  int64_t budget = 0;        // the kv budget the document ran with (0: none)
  int64_t kv_held_max = 0;   // bytes, after a chunk (before the next one's tokens are stored)
  int64_t kv_held_full = 0;  // bytes the whole document would hold uncompressed
  int64_t evicted_blocks = 0;
};

struct LongPplResult {
  std::vector<LongPplDoc> docs;
  int64_t scored = 0;
  double nll_sum = 0.0, nll2_sum = 0.0;
  double ppl = 0.0;
  double ppl_error = 0.0;  // as llama-perplexity: PPL * sqrt(var(NLL) / (n - 1))
  EngineConfig engine;     // resolved
  double seconds = 0.0;
};

using LongPplProgressFn = std::function<void(int doc, int n_docs, const LongPplDoc& done, double seconds)>;

// Throws kestrel::Error for no document, a chunk < 2, or a document longer
// than the model's trained context.
LongPplResult run_long_ppl(const Model& model, const std::vector<std::vector<int32_t>>& docs,
                           const LongPplOptions& options, const LongPplProgressFn& progress = {});

std::string format_long_ppl_markdown(const LongPplResult& r, const std::string& model_name);
std::string format_long_ppl_json(const LongPplResult& r, const std::string& model_name);

}  // namespace kestrel
