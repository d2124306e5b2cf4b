#pragma once
// FlatQuant's learned affine transforms (PAPERS.md card 5, issue 17). In each
// layer, each of four projection inputs x becomes
//
//   x' = (x ⊙ s)(P1 ⊗ P2)
//
// before it is quantized, and the matrices that read it hold
// W' = (W ⊘ s)(P1 ⊗ P2)^-T, so x' W'ᵀ = x Wᵀ in exact arithmetic while x' and
// W' round to 4 bits with less error: tools/flatquant/train.py learns s, P1,
// P2 (and a clipping ratio per weight row) for that, on the model's own text.
//
// Two files carry them:
//  - the trainer's transforms file (kestrel.flatquant.* metadata): per layer
//    blk.N.flat_<site>.scale / .p1 / .p2 and blk.N.<matrix>.flat_clip, which
//    `kestrel quantize --flatquant FILE` folds (model/flatquant_fold.h);
//  - the model file quantize writes: the key kFlatQuantKey, the same
//    transform tensors (LlamaModel applies them per token), and the folded
//    matrices renamed <matrix>_flat.weight, so that llama.cpp refuses the
//    file for the missing tensors instead of computing without transforms.
#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "platform/cpu.h"

namespace kestrel {

inline constexpr const char* kFlatQuantKey = "kestrel.flatquant";

// The transformed inputs, and the matrices reading each.
enum class FlatSite : uint8_t { AttnIn, AttnOut, FfnIn, FfnDown };
inline constexpr int kFlatSites = 4;
const char* flat_site_name(FlatSite site);  // "attn_in", "attn_out", "ffn_in", "ffn_down"
// The matrices (GGUF base names, e.g. "attn_q") that read a site.
const std::vector<std::string>& flat_site_matrices(FlatSite site);
// "blk.N.flat_<site>." (the tensors' common prefix).
std::string flat_site_prefix(int layer, FlatSite site);
// "blk.N.<matrix>_flat.weight": a folded matrix in a model file.
std::string flat_matrix_name(int layer, const std::string& matrix);

class FlatTransform {
 public:
  FlatTransform() = default;
  // Throws unless scale has n1 n2 values, p1 n1², p2 n2², all finite.
  FlatTransform(int n1, int n2, std::vector<float> scale, std::vector<float> p1, std::vector<float> p2);

  int n1() const { return n1_; }
  int n2() const { return n2_; }
  int64_t size() const { return int64_t{n1_} * n2_; }
  bool empty() const { return n1_ == 0; }
  const std::vector<float>& scale() const { return scale_; }
  const std::vector<float>& p1() const { return p1_; }
  const std::vector<float>& p2() const { return p2_; }

  // y = (x ⊙ s)(P1 ⊗ P2) for `rows` rows of size() values (x and y may not
  // alias), through the kernel of `isa` (kernels/kronecker.h).
  void apply(const float* x, float* y, int64_t rows = 1, Isa isa = Isa::Scalar) const;
  // The activation clipping ratio trained for act=a4 (1: none), and its
  // effect: each block of 32 of y clamped to +-ratio x its largest magnitude,
  // so that a4's quantizer (scale amax / 7) takes the trained scale.
  float act_clip() const { return act_clip_; }
  void set_act_clip(float ratio);  // throws outside (0, 1]
  void clip_activations(float* y, int64_t rows = 1) const;
  // What the rows of a matrix reading the transformed input become:
  // w -> (w ⊘ s)(P1^-T ⊗ P2^-T) (inverses in double). Throws when s has a
  // zero or a factor is singular (as far as double pivoting can tell).
  FlatTransform for_weights() const;

 private:
  int n1_ = 0, n2_ = 0;
  std::vector<float> scale_, p1_, p2_;
  float act_clip_ = 1.0f;
};

// The transform of (layer, site) for inputs of n values, from f's tensors
// flat_site_prefix(...) + scale/p1/p2 (F32) and act_clip ([1], optional: 1
// when absent). Throws naming the tensor when one is missing, not F32, or of
// another shape.
FlatTransform read_flat_transform(const gguf::File& f, int layer, FlatSite site, int64_t n);

// Tensor `name` of f as floats: throws naming it when missing, not F32 or not of shape `ne`.
std::vector<float> read_flat_f32(const gguf::File& f, const std::string& name, const std::vector<int64_t>& ne);

}  // namespace kestrel
