#pragma once
// Gemma 3 (arch "gemma3"; text models, e.g. gemma-3-270m). Decoder blocks with
// norms on both sides of each sub-layer (all RMSNorm; the GGUF weights already
// hold Gemma's 1 + w, added by llama.cpp's converter):
//   x  = embed(token) * sqrt(n_embd)
//   q, k = rmsnorm_head(Wq·n), rmsnorm_head(Wk·n)   with n = rmsnorm(x), per head
//   x += postnorm(Wo · attn(rope(q) * scale, rope(k), Wv·n))
//   x += postnorm(Wdown · (gelu_tanh(Wgate·n) * Wup·n))  with n = rmsnorm(x)
//   logits = token_embd · rmsnorm(x)   (tied; optional final soft-capping)
// Attention alternates local layers (a sliding window, RoPE base 10000) and
// global ones (every 6th layer by default: full causal attention, rope.freq_base
// and its scaling); model/config.h read_gemma3_config.
#include <memory>
#include <vector>

#include "model/model.h"
#include "ops/weight.h"

namespace kestrel {

class Gemma3Model final : public Model {
 public:
  Gemma3Model(std::shared_ptr<const gguf::File> file, const std::string& arch, const LoadOptions& options);
  void forward(const Batch& batch, KvCache& cache, float* logits, ForwardContext& ctx) const override;
  void prepare(ForwardContext& ctx) const override;
  const Weight* output_projection() const override { return &output_; }

 private:
  struct Layer {
    std::vector<float> attn_norm;            // [n_embd]
    Weight wq, wk, wv, wo;                   // [n_head*hd, n_embd], [n_kv*hd, n_embd] x2, [n_embd, n_head*hd]
    std::vector<float> q_norm, k_norm;       // [head_dim], per head
    std::vector<float> post_attn_norm;       // [n_embd]
    std::vector<float> ffn_norm;             // [n_embd]
    Weight w_gate, w_up, w_down;             // [n_ff, n_embd] x2, [n_embd, n_ff]
    std::vector<float> post_ffn_norm;        // [n_embd]
  };

  Weight token_embd_;  // [n_vocab, n_embd]
  Weight output_;      // [n_vocab, n_embd]; token_embd_ when tied (as published)
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
};

}  // namespace kestrel
