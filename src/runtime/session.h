#pragma once
// A single-sequence session (run, chat, bench): the token history and prompt
// evaluation in batches, over an engine core (runtime/engine_core.h) that holds
// the threads, the KV cache and the kernels. Feeding a prompt that shares a prefix with the history
// reuses the cached prefix (chat turns re-send the whole conversation).
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/drafter.h"
#include "runtime/engine_core.h"
#include "runtime/kv_compressor.h"
#include "sampling/sampler.h"
#include "switches/engine_config.h"

namespace kestrel {

struct SessionOptions {
  int64_t n_ctx = 4096;  // 0 = the model's training context
  int n_batch = 512;     // prompt tokens per forward pass
  // Threads, kernels, KV type, sampler, KV-Compress (evicts after every
  // prompt, and during decode under a budget: runtime/kv_compressor.h),
  // speculative decoding (`decode`: generate() drafts and verifies): the
  // switches' slots.
  EngineConfig engine;
  // A draft's vocabulary subset (model/vocabulary_subset.h; not owned, it
  // must outlive the session): logits cover its rows only. nullptr: the
  // whole vocabulary. Only drafters set it; generate() needs every token.
  const Weight* output_head = nullptr;
};

class Session {
 public:
  Session(const Model& model, const SessionOptions& options);

  const Model& model() const { return core_.model(); }
  // The engine configuration as resolved (what this session runs with).
  const EngineConfig& config() const { return core_.config(); }
  int64_t n_ctx() const { return core_.cache().shape().n_ctx; }
  // Logits per evaluated token: the vocabulary, or SessionOptions::output_head's rows.
  int64_t n_logits() const { return core_.n_logits(); }
  int64_t n_past() const { return static_cast<int64_t>(history_.size()); }
  const std::vector<int32_t>& history() const { return history_; }
  const KvCache& cache() const { return core_.cache(); }
  ThreadPool& pool() { return core_.pool(); }

  // Makes the history equal to `tokens`, evaluating only what is not cached, and
  // returns the logits after the last token. Throws on context overflow.
  std::span<const float> set_history(std::span<const int32_t> tokens);
  // Appends tokens and returns the logits after the last one.
  std::span<const float> append(std::span<const int32_t> tokens);
  // Evaluates one generated token (a decode step: TEAL thins it) and returns its logits.
  std::span<const float> decode(int32_t token);
  // Evaluates tokens and returns logits for every one of them: [n, n_vocab].
  // Used by perplexity and by the logits golden tests.
  const std::vector<float>& append_all_logits(std::span<const int32_t> tokens);
  // Speculative decoding: evaluates a pending token and its draft as one
  // decode step (KV-Compress treats it as decode, not as a prompt) and
  // returns logits for every one of them: [n, n_vocab].
  const std::vector<float>& verify(std::span<const int32_t> tokens);
  // Speculative decoding with a draft tree (runtime/draft_tree.h): evaluates
  // the pending token and every branch as one decode step, branch b (the
  // path to the tree's b-th leaf) in KV sequence b, which shares the
  // history's blocks: every row is a decode step's bit for bit, as verify()'s.
  // Returns [1 + tree.size(), n_vocab] logits: the pending token's row, then
  // one per node. keep_branch() must follow before anything else.
  const std::vector<float>& verify_tree(int32_t pending, const DraftTree& tree);
  // After verify_tree: the history takes the pending token and the path to
  // `node` (-1: no drafted token), the other rows' KV entries are given back.
  void keep_branch(const DraftTree& tree, int32_t node);
  // Forgets the history past n tokens (rejected drafts): their KV entries
  // are given back. Throws when n is longer than the history, or inside
  // KV-Compress's evicted part.
  void truncate(int64_t n);
  // Tokens the last set_history/append/verify evaluated (the rest was cached).
  int64_t last_evaluated() const { return last_evaluated_; }
  // The drafter of the configured decode policy (nullptr: plain decoding).
  Drafter* drafter() { return drafter_.get(); }
  void clear();
  // CQ calibration: what the forward passes show their queries to (nullptr: none; a
  // prompt under KV-Compress sets its own metric and then none).
  void set_observer(AttentionObserver* observer) { core_.set_observer(observer); }
  // What the forward passes show their hidden states to (`kestrel
  // dump-features`; an EAGLE-3 drafter's store otherwise; nullptr: none).
  void set_hidden_tap(HiddenTap* tap) { core_.set_hidden_tap(tap); }
  // TEAL calibration: what the forward passes show their projections' inputs to (nullptr: none).
  void set_projection_observer(ProjectionObserver* observer) { core_.set_projection_observer(observer); }
  // TEAL: the engine core's thresholds and measured sparsity (nullptr: teal=off).
  const ActivationSparsity* sparsity() const { return core_.sparsity(); }
  // KV-Compress: blocks evicted so far (since the last clear).
  int64_t evicted_blocks() const { return evicted_blocks_; }

 private:
  void eval(std::span<const int32_t> tokens, bool all_logits, bool decode_step);
  // KV-Compress after a decode step (under a budget).
  void compress_after_decode();

  int n_batch_;
  EngineCore core_;
  SequenceCompressor compressor_;
  std::unique_ptr<Drafter> drafter_;
  int64_t evicted_blocks_ = 0;
  std::vector<int32_t> history_;
  int64_t last_evaluated_ = 0;
  std::vector<float> logits_;
  Batch batch_;
  std::vector<int32_t> leaves_, path_;  // verify_tree's branches, in KV sequence order
};

struct GenerateOptions {
  int max_tokens = 128;  // < 0: until end of generation or context full
  SamplingParams sampling;  // its `kind` is the session's (EngineConfig::sampler)
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool stop_at_eog = true;
};

struct GenerateResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::string finish_reason;  // "stop" (end of generation or a stop string), "length", "cancelled"
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0.0;
  double generate_seconds = 0.0;
  // Speculative decoding: target forward passes after the prompt, tokens
  // drafted, and drafted tokens the target accepted (0 for plain decoding).
  int64_t target_passes = 0;
  int64_t drafted = 0;
  int64_t accepted = 0;
};

// Streams text as it is generated; return false from on_text to cancel.
using TextCallback = std::function<bool(const std::string& piece)>;

GenerateResult generate(Session& session, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const TextCallback& on_text = {});

}  // namespace kestrel
