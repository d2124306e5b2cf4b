#include "ops/gelu.h"

#include <cmath>
#include <vector>

#include "core/fp16.h"

namespace kestrel {
namespace {

// 65536 floats (256 KiB): the F16 value of gelu at every F16 input.
const std::vector<float>& gelu_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(1 << 16);
    for (uint32_t h = 0; h < (1u << 16); ++h) {
      const float x = fp16_to_f32(static_cast<uint16_t>(h));
      t[h] = fp16_to_f32(f32_to_fp16(gelu_tanh_exact(x)));
    }
    return t;
  }();
  return table;
}

inline float gelu_lookup(const float* table, float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  return table[f32_to_fp16(x)];
}

}  // namespace

float gelu_tanh_exact(float x) {
  const double d = x;
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  return static_cast<float>(0.5 * d * (1.0 + std::tanh(k * (d + 0.044715 * d * d * d))));
}

float gelu_tanh_f16_table(float x) { return gelu_lookup(gelu_table().data(), x); }

void geglu_inplace(float* gate, const float* up, int64_t n) {
  const float* table = gelu_table().data();
  for (int64_t i = 0; i < n; ++i) gate[i] = gelu_lookup(table, gate[i]) * up[i];
}

}  // namespace kestrel
