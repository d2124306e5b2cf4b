#pragma once
// Perplexity computed the way llama.cpp's llama-perplexity computes it, so the
// figures can be compared digit for digit:
//  - the text is tokenized whole, with BOS when the vocab adds it;
//  - it is cut into n_chunks = min(requested, n_tokens / n_ctx) chunks of n_ctx
//    tokens (the tail is dropped); when the vocab adds BOS, the first token of
//    every chunk is evaluated as BOS;
//  - each chunk is evaluated from an empty KV cache;
//  - with first = n_ctx / 2, the logits at positions first .. n_ctx-2 score the
//    tokens at positions first+1 .. n_ctx-1 (n_ctx - 1 - first tokens a chunk:
//    255 for n_ctx = 512), so every scored token has at least n_ctx/2 tokens of
//    context;
//  - NLL sums in double; PPL = exp(mean NLL); the error printed as "+/-" is
//    PPL * sqrt(var(NLL) / (count - 1)).
// The same pass can record a KL-divergence baseline or compare with one
// (runtime/kl_divergence.h).
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/kl_divergence.h"
#include "runtime/engine_core.h"
#include "switches/engine_config.h"

namespace kestrel {

struct PerplexityOptions {
  int n_ctx = 512;      // tokens per chunk; 0 = the model's training context
  int n_chunks = -1;    // < 0: every whole chunk of the input
  int n_batch = 512;    // tokens per forward pass (at most n_ctx)
  EngineConfig engine;  // threads, kernels, KV type: the switches' slots
};

// Which tokens a run evaluates and scores.
struct PerplexityPlan {
  int n_ctx = 0;
  int n_chunks = 0;
  int first = 0;  // n_ctx / 2: first position whose logits are used
  int n_scored_per_chunk() const { return n_ctx - 1 - first; }
};

// Throws kestrel::Error when the input holds no whole chunk, or n_ctx < 4.
// (llama-perplexity refuses inputs shorter than 2 * n_ctx; one chunk is enough
// for the arithmetic, and a one-chunk baseline must be comparable.)
PerplexityPlan plan_perplexity(size_t n_tokens, int n_ctx, int n_chunks_requested);

// Tokenizes like llama-perplexity: BOS/EOS per the vocab, special-token text
// not parsed. Throws if the vocab adds EOS (the chunking assumes it does not).
std::vector<int32_t> tokenize_for_perplexity(const Tokenizer& tok, std::string_view text);

struct PerplexityProgress {
  int chunk = 0;     // chunks done (1-based count)
  int n_chunks = 0;
  double ppl = 0.0;  // running estimate
  double seconds = 0.0;      // since the first chunk started
  double eta_seconds = 0.0;  // remaining, at the average pace so far
  const KlSummary* kl = nullptr;  // running comparison (no quantiles), when comparing
  const EngineConfig* engine = nullptr;  // what the evaluation runs with (resolved)
};
using PerplexityProgressFn = std::function<void(const PerplexityProgress&)>;

struct PerplexityResult {
  PerplexityPlan plan;
  int64_t n_scored = 0;
  double nll_sum = 0.0, nll2_sum = 0.0;
  double ppl = 0.0;
  double ppl_error = 0.0;           // 0 when fewer than 2 tokens were scored
  std::vector<double> running_ppl;  // the estimate after each chunk
  double seconds = 0.0;
  std::optional<KlSummary> kl;      // when compared with a baseline
  EngineConfig engine;              // what the evaluation ran with (resolved)
};

// Evaluates `tokens` as described above with `model`.
//  record_to:    if set, replaced by a baseline of this run (n_vocab, n_ctx,
//                top-k from its current value, or kLogProbTopK if it is empty).
//  compare_with: if set, every scored position is compared with this baseline,
//                whose n_ctx, vocab size and tokens must match the run's
//                (tokens: its first n_chunks * n_ctx must equal the input's).
// Throws kestrel::Error on bad options or a mismatched baseline.
PerplexityResult run_perplexity(const Model& model, std::span<const int32_t> tokens, const PerplexityOptions& options,
                                LogitsRecord* record_to = nullptr, const LogitsRecord* compare_with = nullptr,
                                const PerplexityProgressFn& progress = {});

// Compares `model` with a baseline on the baseline's own tokens and n_ctx
// (options.n_ctx is ignored; options.n_chunks < 0 = all of the baseline's).
PerplexityResult run_kl_divergence(const Model& model, const LogitsRecord& base, const PerplexityOptions& options,
                                   const PerplexityProgressFn& progress = {});

// llama-perplexity's running estimate, "[3]12.3456,".
std::string format_running_ppl(int chunk, double ppl);
// "Final estimate: PPL = 12.3456 +/- 0.12345"
std::string format_final_estimate(const PerplexityResult& r);

}  // namespace kestrel
