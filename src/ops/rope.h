#pragma once
// Rotary position embedding, in the two layouts llama.cpp uses:
//  - Norm: rotates adjacent pairs (x[2i], x[2i+1])      (llama, mistral)
//  - Neox: rotates halves (x[i], x[i + n_rot/2])          (qwen2)
// Angles follow ggml: theta_i = p * freq_scale * base^(-2i/n_rot) / factor_i,
// with base^(-2i/n_rot) built by repeated float multiplication, so that our
// angles round like llama.cpp's.
#include <cstdint>
#include <vector>

namespace kestrel {

enum class RopeLayout { Norm, Neox };

struct RopeParams {
  RopeLayout layout = RopeLayout::Norm;
  int n_rot = 0;              // rotated dimensions per head (<= head_dim)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;    // 1 / linear scaling factor
  std::vector<float> freq_factors;  // optional, n_rot/2 entries (Llama 3.1 rope_freqs)
};

// Fills cos/sin tables for one position: [n_rot/2] each.
void rope_angles(const RopeParams& p, int64_t pos, float* cos_out, float* sin_out);

// Rotates n_heads heads of head_dim values in place, at one position.
void rope_apply(const RopeParams& p, const float* cos_t, const float* sin_t, float* x, int n_heads,
                int head_dim);

}  // namespace kestrel
