#include "ops/rope.h"

#include <cmath>

namespace kestrel {

void rope_angles(const RopeParams& p, int64_t pos, float* cos_out, float* sin_out) {
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
  float theta_base = static_cast<float>(pos);
  for (int i = 0; i < p.n_rot / 2; ++i) {
    float theta_extrap = theta_base;
    if (!p.freq_factors.empty()) theta_extrap /= p.freq_factors[i];
    const float theta = p.freq_scale * theta_extrap;
    cos_out[i] = std::cos(theta);
    sin_out[i] = std::sin(theta);
    theta_base *= theta_scale;
  }
}

void rope_apply(const RopeParams& p, const float* cos_t, const float* sin_t, float* x, int n_heads,
                int head_dim) {
  const int half = p.n_rot / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    if (p.layout == RopeLayout::Norm) {
      for (int i = 0; i < half; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * cos_t[i] - x1 * sin_t[i];
        v[2 * i + 1] = x0 * sin_t[i] + x1 * cos_t[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cos_t[i] - x1 * sin_t[i];
        v[i + half] = x0 * sin_t[i] + x1 * cos_t[i];
      }
    }
  }
}

}  // namespace kestrel
