#pragma once
// A loaded model: weights (mapped from the GGUF file), hyper-parameters and the
// tokenizer. forward() runs one batch against a KV cache the caller owns.
#include <memory>
#include <string>
#include <vector>

#include "kernels/attention_set.h"
#include "kv/kv_cache.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/hidden_tap.h"
#include "ops/sparse_matmul.h"
#include "ops/matmul.h"
#include "ops/weight.h"
#include "ops/workspace.h"
#include "platform/cpu.h"
#include "platform/thread_pool.h"
#include "tokenizer/tokenizer.h"

namespace kestrel {

namespace gguf {
class File;
}

struct LoadOptions {
  bool verbose = false;  // print metadata and progress to stderr
};

// Activations of one forward pass, owned by the caller (a session) so that one
// loaded model can serve several sessions. Grown on demand, reused across calls.
struct ForwardScratch {
  std::vector<float> x, xb, q, k, v, att, gate, up, rope_cos, rope_sin, out_rows, block_out;
  std::vector<float> wide;                 // rows wider than n_embd (EAGLE-3's [embedding; g])
  std::vector<float> flat;                 // FlatQuant files: a projection input after its transform
  Workspace workspace;                     // quantized activations
  SparseScratch sparse;                    // TEAL's masked inputs and kept-input lists
};

// What a forward pass runs with: the engine core's threads, scratch and the
// kernels it picked (runtime/engine_core.h builds it; the model only reads it).
class AttentionObserver;     // kv/attention_batch.h
struct ActivationSparsity;   // model/activation_sparsity.h
class ProjectionObserver;    // model/activation_sparsity.h

struct ForwardContext {
  ThreadPool& pool;
  ForwardScratch& scratch;
  Isa isa;                                      // every kernel's level
  MatmulOptions matmul;                         // the weight kernels
  const kernels::AttentionKernelSet& attention;  // picked for the KV cache's type
  AttentionObserver* observer = nullptr;         // KV-Compress, CQ calibration: sees the attention inputs
  HiddenTap* hidden_tap = nullptr;               // EAGLE-3: sees the residual stream at some layers
  const ActivationSparsity* sparsity = nullptr;  // TEAL: thresholds of the projections' inputs
  ProjectionObserver* projection_observer = nullptr;  // TEAL calibration: sees the projections' inputs
  // A draft's vocabulary subset (model/vocabulary_subset.h): the rows the
  // vocabulary projection computes instead of the model's own, so that logits
  // are [n, output_head->rows]; nullptr: the whole vocabulary.
  const Weight* output_head = nullptr;
};

// The vocabulary projection a forward pass runs: ctx's subset, else the model's own.
inline const Weight& vocabulary_projection(const Weight& own, const ForwardContext& ctx) {
  return ctx.output_head != nullptr ? *ctx.output_head : own;
}

class Model {
 public:
  virtual ~Model() = default;

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const gguf::File& file() const { return *file_; }
  // The file it was loaded from (finds sidecars such as CQ codebooks next to it).
  const std::string& path() const { return path_; }
  // Bytes of weights the forward pass reads (all tensors of the file).
  size_t weight_bytes() const { return weight_bytes_; }

  KvShape kv_shape(int64_t n_ctx, int n_seq) const {
    return KvShape{config_.n_layer, config_.n_kv_head, config_.head_dim, n_ctx, n_seq};
  }

  // Runs the batch; writes [batch.n_logits(), n_vocab] logits, rows in batch order
  // (n_vocab: ctx.output_head's rows when it is set).
  // Throws kestrel::Error for invalid tokens or positions outside the cache.
  virtual void forward(const Batch& batch, KvCache& cache, float* logits, ForwardContext& ctx) const = 0;

  // The token embedding table whose rows the first layer takes as they are
  // ([n_vocab, n_embd]), and the vocabulary projection: an EAGLE-3 head
  // without its own shares them. nullptr where the architecture transforms
  // the rows (Gemma scales them).
  virtual const Weight* plain_token_embeddings() const { return nullptr; }
  virtual const Weight* output_projection() const { return nullptr; }

  // One decoder layer's block on inputs a caller recorded (TEAL calibration,
  // runtime/teal_calibration.h): from the block's normed input [T, n_embd] to
  // its output [T, n_embd] before the residual add. The attention block writes
  // `layer` of `cache` at the batch's positions and attends over it. Throws
  // for architectures that do not offer it.
  enum class Block : uint8_t { Attention, Mlp };
  // Whether forward() hands its projections ForwardContext::sparsity (TEAL).
  virtual bool thins_projection_inputs() const { return false; }
  virtual void run_block(Block block, int layer, const Batch& batch, const float* normed, KvCache& cache,
                         float* out, ForwardContext& ctx) const;

  // Repacks the weights the forward pass will use with ctx's kernel choice
  // (ops/matmul.h prepare_weight), once per model: sessions call it when they
  // start so that the first request does not pay for it. Safe to call again.
  virtual void prepare(ForwardContext& ctx) const = 0;

 protected:
  Model() = default;
  // The end of every architecture's constructor, once config_ (n_vocab
  // included) and file_ are set: builds the tokenizer, checks that it has one
  // token per embedding row, and counts the weight bytes.
  void finish_loading(VocabSpec spec);
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::shared_ptr<const gguf::File> file_;
  size_t weight_bytes_ = 0;

 private:
  friend std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options);
  std::string path_;
};

// Opens a GGUF file and builds the model for its general.architecture.
// Unknown architectures and missing or mis-shaped tensors are errors.
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});

// Architectures load_model understands.
std::vector<std::string> supported_architectures();

}  // namespace kestrel
