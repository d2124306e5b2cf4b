#pragma once
// QuaRot-style rotation folded into a llama-family decoder's weights
// (`kestrel quantize --rotate`): the model computes the same function, but
// its weight matrices no longer have the channel outliers that 4-bit blocks
// round badly. Everything folds offline, so the file stays a plain GGUF that
// llama.cpp runs too.
//
//  1. Each RMSNorm's weight g folds into the matrices that read the norm
//     (W <- W diag(g), g <- 1): RMSNorm then commutes with any orthogonal Q,
//     since |Qx| = |x|. A tied output head is untied first (the embedding and
//     the head need different matrices from here on).
//  2. The residual stream turns into Qᵀr: embeddings E <- E Q, every matrix
//     reading the stream W <- W Q (q, k, v, gate, up, the head), every matrix
//     writing to it W <- Qᵀ W (attention output, down).
//  3. Per attention head, values turn into P v (P orthogonal, head_dim):
//     W_v <- P W_v (and its bias), W_o <- W_o Pᵀ on each head's columns.
//     Softmax weights are a convex combination of value rows, so P passes
//     through attention.
// Q and P are OrthogonalTransforms (random-sign Hadamard ⊗ random orthogonal).
#include <cstdint>
#include <vector>

#include "model/float_decoder.h"
#include "model/orthogonal_transform.h"

namespace kestrel {

class ThreadPool;

// What a rotation did, so inputs recorded on the original model map onto the
// rotated one (AWQ's statistics after --rotate).
class DecoderRotation {
 public:
  DecoderRotation(int64_t n_embd, int64_t head_dim, uint64_t seed);

  // Attention input (the q/k/v input, attn_norm applied): x <- Qᵀ (x / g).
  void map_attention_input(int layer, float* x) const { map_normed(attn_norm_, layer, x); }
  // MLP input (gate/up input, ffn_norm applied): x <- Qᵀ (x / g).
  void map_mlp_input(int layer, float* x) const { map_normed(ffn_norm_, layer, x); }
  // Attention output (the o input, n_head x head_dim): each head's x <- P x.
  void map_output_input(float* x, int64_t n) const;

  const OrthogonalTransform& residual() const { return residual_; }
  const OrthogonalTransform& head() const { return head_; }

 private:
  friend DecoderRotation rotate_decoder(FloatDecoder& d, uint64_t seed, ThreadPool& pool);
  void map_normed(const std::vector<std::vector<float>>& norms, int layer, float* x) const;
  OrthogonalTransform residual_, head_;
  std::vector<std::vector<float>> attn_norm_, ffn_norm_;  // the folded weights, per layer
};

// Rotates d in place (d must hold the vocabulary tensors: load_float_decoder
// with vocabulary). Throws when it does not.
DecoderRotation rotate_decoder(FloatDecoder& d, uint64_t seed, ThreadPool& pool);

// The one rotation that cannot fold: the down projection's input (the gated
// MLP activation) turns into H x, H the Walsh-Hadamard transform on chunks of
// `down_hadamard_block(n_ff)` values (kernels/hadamard.h), W_down <- W_down H.
// The runtime applies H to each token's activation before the projection
// (LlamaModel, from the key below), so such a file is kestrel's only: its
// down matrices are renamed blk.N.ffn_down_hadamard.weight, and llama.cpp
// refuses the file for the missing ffn_down instead of computing garbage.
inline constexpr const char* kDownHadamardKey = "kestrel.ffn_down.hadamard_block";
int down_hadamard_block(int64_t n_ff);                     // the largest power of two dividing n_ff (0 when odd)
int rotate_down_input(FloatDecoder& d, ThreadPool& pool);  // returns the block

}  // namespace kestrel
