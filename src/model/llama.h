#pragma once
// The llama family: Llama 2/3, SmolLM2, Mistral (arch "llama") and Qwen2 (arch
// "qwen2": QKV biases, NeoX RoPE). Pre-norm decoder blocks:
//   x += Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n)   with n = rmsnorm(x)
//   x += Wdown · (silu(Wgate·n) * Wup·n)            with n = rmsnorm(x)
#include <memory>
#include <vector>

#include "model/flat_transform.h"
#include "model/model.h"
#include "ops/weight.h"

namespace kestrel {

class LlamaModel final : public Model {
 public:
  LlamaModel(std::shared_ptr<const gguf::File> file, const std::string& arch, const LoadOptions& options);
  void forward(const Batch& batch, KvCache& cache, float* logits, ForwardContext& ctx) const override;
  void prepare(ForwardContext& ctx) const override;
  bool thins_projection_inputs() const override { return true; }
  void run_block(Block block, int layer, const Batch& batch, const float* normed, KvCache& cache, float* out,
                 ForwardContext& ctx) const override;
  const Weight* plain_token_embeddings() const override { return &token_embd_; }
  const Weight* output_projection() const override { return &output_; }

 private:
  struct Layer {
    std::vector<float> attn_norm;        // [n_embd]
    Weight wq, wk, wv, wo;               // [n_head*hd, n_embd], [n_kv*hd, n_embd] x2, [n_embd, n_head*hd]
    std::vector<float> bq, bk, bv;       // qwen2 only
    std::vector<float> ffn_norm;         // [n_embd]
    Weight w_gate, w_up, w_down;         // [n_ff, n_embd] x2, [n_embd, n_ff]
    FlatTransform flat[kFlatSites];      // FlatQuant files only (model/flat_transform.h)
  };

  // RoPE's cos/sin of every row's position into S.rope_cos / rope_sin.
  void rope_table(const Batch& b, ForwardScratch& S, ThreadPool& pool) const;
  // The blocks from their normed input [T, n_embd] to their output (before the residual add).
  void attention_block(int l, const Batch& b, const float* normed, KvCache& cache, float* out,
                       ForwardContext& ctx) const;
  void mlp_block(int l, const Batch& b, const float* normed, float* out, ForwardContext& ctx) const;
  // FlatQuant files: the T rows of x through layer l's transform of `site`
  // (into `to`), clipped for act=a4; x itself for other files.
  const float* flat_input(int l, FlatSite site, const float* x, int64_t T, std::vector<float>& to,
                          const ForwardContext& ctx) const;

  Weight token_embd_;  // [n_vocab, n_embd]
  Weight output_;      // [n_vocab, n_embd]; token_embd_ when tied
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  // `kestrel quantize --rotate-down` files: the Hadamard chunk applied to the
  // down projection's input (model/weight_rotation.h); 0: none.
  int down_hadamard_ = 0;
  bool flat_ = false;  // `kestrel quantize --flatquant` files (kFlatQuantKey)
};

}  // namespace kestrel
