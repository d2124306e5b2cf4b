// Scalar panel GEMM: reads the panel layout of kernels/packed_gemm.h lane by lane.
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/ref/ref_panel_gemm.h"

namespace kestrel::kernels::ref {
namespace {

// Unsigned quant of panel row r, element i of a group.
int panel_quant(const PanelFormat& f, const uint8_t* group, int r, int i) {
  if (!f.nibbles) return group[(i / 4) * 64 + r * 4 + i % 4];
  const int half = f.group / 2;
  const int b = i % half;
  const uint8_t v = group[(b / 4) * 64 + r * 4 + b % 4];
  const int low = i < half ? (v & 0xF) : (v >> 4);
  if (f.nonlinear) return kIq4nlUnsigned[low];
  if (!f.high_bits) return low;
  const uint8_t h = group[panel_nibble_bytes(f) + r * 4 + i % 4];
  return low | (((h >> (f.high_bits * (i / 4))) & ((1 << f.high_bits) - 1)) << 4);
}

float lane_float(const PanelFormat& f, const uint8_t* p, int r) {
  if (f.half_scales) {
    uint16_t h;
    std::memcpy(&h, p + 2 * r, 2);
    return fp16_to_f32(h);
  }
  float v;
  std::memcpy(&v, p + 4 * r, 4);
  return v;
}

// The weight scale of row r in group g: float(d) * float(sc) for sub_scales
// formats (exact: an 11-bit significand times an 8-bit integer).
// kMin: the min instead (float(dmin) * float(m)).
float group_scale(const PanelFormat& f, const PanelGemmArgs& a, int64_t g, int r, bool min = false) {
  const uint8_t* p = a.panel + static_cast<size_t>(g) * f.group_bytes + panel_quant_bytes(f) +
                     (min ? panel_scale_bytes(f) : 0);
  if (!f.sub_scales) return lane_float(f, p, r);
  const uint8_t* d = a.panel + panel_super_offset(f, a.cols) +
                     static_cast<size_t>(g / f.super_groups) * panel_super_bytes(f) + (min ? 32 : 0);
  uint16_t h;
  std::memcpy(&h, d + 2 * r, 2);
  return fp16_to_f32(h) * static_cast<float>(static_cast<int8_t>(p[r]));
}

}  // namespace

void panel_gemm(const PanelFormat& f, const PanelGemmArgs& a) {
  const int64_t n_groups = a.cols / f.group;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const uint8_t* act = a.act + static_cast<size_t>(t) * a.act_stride;
    const ActGroup* ag = a.groups + static_cast<size_t>(t) * a.groups_stride;
    for (int r = 0; r < a.n_rows; ++r) {
      float acc = 0.0f, mins = 0.0f;
      int32_t super_sum = 0;
      for (int64_t g = 0; g < n_groups; ++g) {
        const uint8_t* group = a.panel + static_cast<size_t>(g) * f.group_bytes;
        const auto* aq = reinterpret_cast<const int8_t*>(
            act + static_cast<size_t>(g / f.act_groups_per_block) * static_cast<size_t>(f.act_block_bytes) +
            static_cast<size_t>(f.act_qs_offset) + static_cast<size_t>(g % f.act_groups_per_block * f.group));
        int32_t sum = ag[g].offset_sum;
        for (int i = 0; i < f.group; ++i) sum += panel_quant(f, group, r, i) * aq[i];
        if (f.sub_scales) {
          // int8 scale times the group's sum, exact, over the super-block; its
          // float scale d * ascale once at the super-block's last group.
          super_sum += static_cast<int8_t>(group[panel_quant_bytes(f) + static_cast<size_t>(r)]) * sum;
          if ((g + 1) % f.super_groups == 0) {
            const uint8_t* d = a.panel + panel_super_offset(f, a.cols) +
                               static_cast<size_t>(g / f.super_groups) * panel_super_bytes(f);
            uint16_t h;
            std::memcpy(&h, d + 2 * r, 2);
            acc = std::fma(static_cast<float>(super_sum), fp16_to_f32(h) * ag[g].scale, acc);
            super_sum = 0;
          }
        } else {
          const float scale = group_scale(f, a, g, r) * ag[g].scale;
          acc = std::fma(static_cast<float>(sum), scale, acc);
        }
        if (f.has_min) mins = std::fma(group_scale(f, a, g, r, /*min=*/true), ag[g].min, mins);
      }
      a.y[t * a.ldy + r] = f.has_min ? acc + mins : acc;
    }
  }
}

}  // namespace kestrel::kernels::ref
