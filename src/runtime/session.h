#pragma once
// A single-sequence session: the token history, its KV cache, and prompt
// evaluation in batches. Feeding a prompt that shares a prefix with the history
// reuses the cached prefix (chat turns re-send the whole conversation).
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "model/model.h"
#include "platform/thread_pool.h"
#include "sampling/sampler.h"

namespace kestrel {

struct SessionOptions {
  int64_t n_ctx = 4096;  // capped at the model's training context; 0 = the model's
  int n_threads = 0;     // 0 = all cores
  int n_batch = 512;     // prompt tokens per forward pass
  KvType kv_type = KvType::F16;
  Isa isa = best_isa();
  MatmulOptions matmul = {};  // weight kernels (the `matmul` switch)
};

class Session {
 public:
  Session(const Model& model, const SessionOptions& options);

  const Model& model() const { return model_; }
  int64_t n_ctx() const { return cache_.shape().n_ctx; }
  int64_t n_past() const { return static_cast<int64_t>(history_.size()); }
  const std::vector<int32_t>& history() const { return history_; }
  const KvCache& cache() const { return cache_; }
  ThreadPool& pool() { return pool_; }

  // Makes the history equal to `tokens`, evaluating only what is not cached, and
  // returns the logits after the last token. Throws on context overflow.
  std::span<const float> set_history(std::span<const int32_t> tokens);
  // Appends tokens and returns the logits after the last one.
  std::span<const float> append(std::span<const int32_t> tokens);
  // Evaluates tokens and returns logits for every one of them: [n, n_vocab].
  // Used by perplexity and by the logits golden tests.
  const std::vector<float>& append_all_logits(std::span<const int32_t> tokens);
  void clear();

 private:
  void eval(std::span<const int32_t> tokens, bool all_logits);

  const Model& model_;
  SessionOptions options_;
  ThreadPool pool_;
  KvCache cache_;
  std::vector<int32_t> history_;
  std::vector<float> logits_;
  Batch batch_;
  ForwardScratch scratch_;
};

struct GenerateOptions {
  int max_tokens = 128;  // < 0: until end of generation or context full
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool stop_at_eog = true;
};

struct GenerateResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::string finish_reason;  // "stop", "length", "eog", "cancelled"
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0.0;
  double generate_seconds = 0.0;
};

// Streams text as it is generated; return false from on_text to cancel.
using TextCallback = std::function<bool(const std::string& piece)>;

GenerateResult generate(Session& session, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const TextCallback& on_text = {});

}  // namespace kestrel
