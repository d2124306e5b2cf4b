#pragma once
// The engine core every host is built on: the thread pool, the KV store, the
// activations' scratch and the kernels, made once from one EngineConfig
// (switches/engine_config.h). Hosts own their policy, not a copy of the core:
//   Session    one sequence (run, chat, bench)           runtime/session.h
//   Scheduler  many slots, continuous batching (serve)   runtime/scheduler.h
//   perplexity chunks from an empty cache (perplexity, KLD, ab)  runtime/perplexity.h
// A switch changes which kernel or store the core holds, never the host.
#include <string>

#include "kv/kv_cache.h"
#include "model/model.h"
#include "platform/thread_pool.h"
#include "switches/engine_config.h"

namespace kestrel {

class EngineCore {
 public:
  // Resolves the configuration (threads counted, the instruction set lowered to
  // what the CPU runs), picks the kernels, makes the KV store for `kv_shape` and
  // prepares the model's weights for the chosen matmul kernels, so that the
  // first request does not pay for repacking. Throws kestrel::Error for a
  // configuration that cannot run here, naming what would.
  EngineCore(const Model& model, const EngineConfig& config, const KvShape& kv_shape);
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;

  const Model& model() const { return model_; }
  // The configuration as resolved: what the host runs with and reports.
  const EngineConfig& config() const { return config_; }
  ThreadPool& pool() { return pool_; }
  KvCache& cache() { return cache_; }
  const KvCache& cache() const { return cache_; }

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

 private:
  const Model& model_;
  EngineConfig config_;
  ThreadPool pool_;
  KvCache cache_;
  ForwardScratch scratch_;
  ForwardContext ctx_;
};

}  // namespace kestrel
