#pragma once
// An EAGLE-3 draft head (llama.cpp's GGUF architecture "eagle3"): one decoder
// layer that drafts for a target model from the target's own hidden states.
// At head position P it takes the pair (token t[P+1], g[P]), where g[P] is
//   fc · [h_a(P); h_b(P); h_c(P)]        the target's residual stream at the
//                                        input of three layers (target_layers)
// for positions the target evaluated, and the head's own pre-norm output of
// position P-1 for positions it drafts past them. The layer:
//   c  = [rmsnorm(embd(t)) * attn_norm ; rmsnorm(g) * attn_norm_2]     (2 n_embd)
//   h  = Wo · attn(rope(Wq·c), rope(Wk·c), Wv·c) + g
//   h += Wdown · (silu(Wgate·n) * Wup·n)       n = rmsnorm(h) * ffn_norm
//   logits = output · (rmsnorm(h) * output_norm)   over the draft vocabulary;
//   d2t maps a draft id to the target's token id (absolute ids, int64).
// The token embeddings (and the output, when the head has none) are the
// target's. RoPE is GGML's normal (adjacent pairs) mode, as llama.cpp runs it.
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "ops/weight.h"

namespace kestrel {

struct Eagle3Config {
  ModelConfig layer;                  // n_embd, heads, n_ff, rms_eps, RoPE; n_vocab = the target's
  std::vector<int> target_layers;     // three target layer ids (n_layer: after the last)
  int target_hidden = 0;              // the target's n_embd
  bool norm_before_residual = false;  // the residual is rmsnorm(g) * attn_norm_2, not g
  bool norm_before_fc = false;        // fc sees rmsnorm(features) * enc.output_norm
  int n_draft_vocab = 0;
};

class Eagle3Head {
 public:
  // Loads `path` for `target`; throws kestrel::Error naming what does not fit
  // (another architecture, another vocabulary, hidden size or layer count,
  // a target whose embeddings it cannot share, bad tensors).
  Eagle3Head(const std::string& path, const Model& target);

  const Eagle3Config& config() const { return config_; }
  KvShape kv_shape(int64_t n_ctx, int n_seq) const {
    return KvShape{1, config_.layer.n_kv_head, config_.layer.head_dim, n_ctx, n_seq};
  }
  int features_width() const { return 3 * config_.target_hidden; }

  void prepare(ForwardContext& ctx) const;
  // g [n, n_embd] from the target's features [n, features_width()].
  void encode(const float* features, int64_t n, float* g, ForwardContext& ctx) const;
  // One head step for every row of b: input (b.tokens[t], g row t) at
  // b.pos[t]; stores the row's keys and values in `cache` (one layer), writes
  // its pre-norm output to prenorm [b.size(), n_embd] and, for rows that want
  // logits, the draft-vocabulary logits [b.n_logits(), n_draft_vocab].
  void decode(const Batch& b, const float* g, KvCache& cache, ForwardContext& ctx, float* prenorm, float* logits) const;
  // The target's token id of a draft-vocabulary id.
  int32_t target_token(int32_t draft_id) const { return d2t_.empty() ? draft_id : d2t_[static_cast<size_t>(draft_id)]; }

 private:
  Eagle3Config config_;
  std::shared_ptr<const gguf::File> file_;  // keeps the mapped weights alive
  Weight fc_, wq_, wk_, wv_, wo_, w_gate_, w_up_, w_down_;
  Weight token_embd_, output_;  // the target's unless the head has its own
  std::vector<float> enc_norm_, attn_norm_, hidden_norm_, ffn_norm_, output_norm_;
  std::vector<int32_t> d2t_;  // empty: the draft vocabulary is the target's
};

}  // namespace kestrel
