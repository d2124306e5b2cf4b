#pragma once
// Measures how far a configuration's next-token distributions move from the
// exact path's (runtime/accuracy_budget.h's figures), the way a user meets
// them: a prompt, then decode steps. The calibration text is cut into a prompt
// of n_prompt tokens followed by n_positions decode steps, each fed the text's
// own next token (teacher forcing), so every switch acts where it acts in use:
// TEAL thins the decode steps, KV-Compress evicts after the prompt, a
// quantized KV cache is read back by every step. The exact path's log-probs
// over the whole vocabulary are kept once; each configuration is compared
// with them position by position.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/accuracy_budget.h"
#include "switches/engine_config.h"

namespace kestrel {

struct ProbeOptions {
  // Tokens evaluated as one prompt. Windowed switches act only past their
  // window: kv=cq2 keeps its last 128 tokens in f16, and on SmolLM2 its KLD
  // after a prompt of 192 was 0.008, after 384 0.033, after 512 0.063 (on
  // WikiText at 512: 0.09). So the probe reaches well past the windows.
  int n_prompt = 512;
  int n_positions = 64;  // decode steps compared after it
  bool operator==(const ProbeOptions&) const = default;
};

// The built-in calibration text: our own prose (not WikiText, which
// perplexity is measured on), a few thousand characters of narrative,
// explanation, dialogue and numbers.
std::string_view probe_calibration_text();

// The tokens a probe evaluates: `text` tokenized with BOS per the vocab, cut to
// n_prompt + n_positions + 1. Throws kestrel::Error when the text is shorter.
std::vector<int32_t> probe_tokens(const Model& model, std::string_view text, const ProbeOptions& o);

// One position's next-token distributions compared over the whole vocabulary:
// KL(exact || other) in nats, and whether the most likely tokens agree. Both
// sides' log-probs go through one float expression, so identical logits give 0.
struct RowComparison {
  double kld = 0.0;
  bool same_top = true;
  double nll_exact = 0.0, nll_other = 0.0;  // of `target` (when one is given)
};
RowComparison compare_logits(std::span<const float> exact, std::span<const float> other, int32_t target = -1);

class AccuracyProbe {
 public:
  // Runs the exact configuration once and keeps its log-probs.
  AccuracyProbe(const Model& model, std::vector<int32_t> tokens, const EngineConfig& exact, const ProbeOptions& o);
  // Runs `config` on the same tokens and compares every decode step with the exact path's.
  AccuracyFigures compare(const EngineConfig& config) const;
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  const Model& model_;
  std::vector<int32_t> tokens_;
  ProbeOptions options_;
  int n_vocab_ = 0;
  std::vector<float> exact_logits_;  // [n_positions, n_vocab]
};

// Teacher-forced decode: calls on_step(j, logits) for the logits of each of
// the n_positions decode steps (step j predicts tokens[n_prompt + j + 1]).
// Speculative decoding is switched off (it cannot change a logit).
void run_probe(const Model& model, std::span<const int32_t> tokens, EngineConfig config, const ProbeOptions& o,
               const std::function<void(int, std::span<const float>)>& on_step);

}  // namespace kestrel
