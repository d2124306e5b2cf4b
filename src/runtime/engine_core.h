#pragma once
// The engine core every host is built on: the thread pool, the KV store, the
// activations' scratch and the kernels, made once from one EngineConfig
// (switches/engine_config.h). Hosts own their policy, not a copy of the core:
//   Session    one sequence (run, chat, bench)           runtime/session.h
//   Scheduler  many slots, continuous batching (serve)   runtime/scheduler.h
//   perplexity chunks from an empty cache (perplexity, KLD, ab)  runtime/perplexity.h
// A switch changes which kernel or store the core holds, never the host.
#include <memory>
#include <string>

#include "kv/kv_cache.h"
#include "model/activation_sparsity.h"
#include "model/model.h"
#include "platform/thread_pool.h"
#include "switches/engine_config.h"

namespace kestrel {

// Throws naming the first weight matrix whose products take float activations
// (F32, F16, BF16): act=a4 would leave it at full precision, and QSpec's draft
// would compute what the target does.
void check_four_bit_activations(const Model& model);

class EngineCore {
 public:
  // Resolves the configuration (threads counted, the instruction set lowered to
  // what the CPU runs), picks the kernels, makes the KV store for `kv_shape` and
  // prepares the model's weights for the chosen matmul kernels, so that the
  // first request does not pay for repacking. Throws kestrel::Error for a
  // configuration that cannot run here, naming what would. output_head: a
  // draft's vocabulary subset (model/vocabulary_subset.h; it must outlive the
  // core), computed and prepared instead of the model's whole vocabulary.
  EngineCore(const Model& model, const EngineConfig& config, const KvShape& kv_shape,
             const Weight* output_head = nullptr);
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;

  const Model& model() const { return model_; }
  // The configuration as resolved: what the host runs with and reports.
  const EngineConfig& config() const { return config_; }
  ThreadPool& pool() { return pool_; }
  KvCache& cache() { return cache_; }
  const KvCache& cache() const { return cache_; }
  // Logits per row a forward pass writes: the vocabulary, or the subset's size.
  int64_t n_logits() const { return ctx_.output_head ? ctx_.output_head->rows : model_.config().n_vocab; }

  // One forward pass of `batch` against the KV store (Model::forward).
  // decode_kernels: every token through the kernels of a one-token batch
  // (MatmulOptions::decode_kernels), for logits equal to a decode step's.
  void forward(const Batch& batch, float* logits, bool decode_kernels = false);
  // What the next forward passes show their attention inputs to (KV-Compress's
  // metric, CQ calibration's query moments; nullptr: none).
  void set_observer(AttentionObserver* observer) { ctx_.observer = observer; }
  // What the next forward passes show their hidden states to (EAGLE-3's
  // feature store, `kestrel dump-features`; nullptr: none).
  void set_hidden_tap(HiddenTap* tap) { ctx_.hidden_tap = tap; }
  // TEAL: the thresholds the forward passes run with (nullptr: teal=off), and
  // the share of the weights their decode steps skipped so far.
  const ActivationSparsity* sparsity() const { return sparsity_.get(); }
  // What the next forward passes show their projections' inputs to (TEAL calibration; nullptr: none).
  void set_projection_observer(ProjectionObserver* observer) { ctx_.projection_observer = observer; }
  // One decoder layer's block on recorded inputs (Model::run_block) against
  // this core's KV store, with these thresholds (nullptr: dense): TEAL's
  // calibration measures each allocation's block-output error with it.
  void run_block(Model::Block block, int layer, const Batch& batch, const float* normed, float* out,
                 const ActivationSparsity* sparsity);

 private:
  const Model& model_;
  EngineConfig config_;
  ThreadPool pool_;
  KvCache cache_;
  ForwardScratch scratch_;
  std::unique_ptr<const ActivationSparsity> sparsity_;
  ForwardContext ctx_;
};

}  // namespace kestrel
