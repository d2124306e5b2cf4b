#include "unit/kernels/kernel_test_util.h"

#include "kernels/blocks.h"

namespace kestrel::kernels::test {

std::vector<float> offset_parts(DType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> m(static_cast<size_t>(n), 0.0f);
  switch (t) {
    case DType::Q4_1:
    case DType::Q5_1: {
      const size_t bb = traits(t).block_bytes;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, &q[static_cast<size_t>(i / 32) * bb + 2], 2);
        m[static_cast<size_t>(i)] = fp16_to_f32(h);
      }
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const size_t bb = traits(t).block_bytes;
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* b = &q[static_cast<size_t>(i / 256) * bb];
        uint16_t dmin;
        std::memcpy(&dmin, b + 2, 2);
        uint8_t sc, mn;
        k_scale_min(static_cast<int>(i % 256 / 32), b + 4, &sc, &mn);
        m[static_cast<size_t>(i)] = fp16_to_f32(dmin) * mn;
      }
      break;
    }
    case DType::Q2_K: {
      const size_t bb = traits(t).block_bytes;
      for (int64_t i = 0; i < n; ++i) {
        const auto& b = *reinterpret_cast<const BlockQ2K*>(&q[static_cast<size_t>(i / 256) * bb]);
        m[static_cast<size_t>(i)] = fp16_to_f32(b.dmin) * static_cast<float>(b.scales[i % 256 / 16] >> 4);
      }
      break;
    }
    default:
      break;
  }
  return m;
}

}  // namespace kestrel::kernels::test
