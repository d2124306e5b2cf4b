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
  return i < half ? (v & 0xF) : (v >> 4);
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

}  // namespace

void panel_gemm(const PanelFormat& f, const PanelGemmArgs& a) {
  const int64_t n_groups = a.cols / f.group;
  const size_t quant_bytes = panel_quant_bytes(f);
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const uint8_t* act = a.act + static_cast<size_t>(t) * a.act_stride;
    const ActGroup* ag = a.groups + static_cast<size_t>(t) * a.groups_stride;
    for (int r = 0; r < a.n_rows; ++r) {
      float acc = 0.0f, mins = 0.0f;
      for (int64_t g = 0; g < n_groups; ++g) {
        const uint8_t* group = a.panel + static_cast<size_t>(g) * f.group_bytes;
        const auto* aq = reinterpret_cast<const int8_t*>(
            act + static_cast<size_t>(g / f.act_groups_per_block) * static_cast<size_t>(f.act_block_bytes) +
            static_cast<size_t>(f.act_qs_offset) + static_cast<size_t>(g % f.act_groups_per_block * f.group));
        int32_t sum = ag[g].offset_sum;
        for (int i = 0; i < f.group; ++i) sum += panel_quant(f, group, r, i) * aq[i];
        const float scale = lane_float(f, group + quant_bytes, r) * ag[g].scale;
        acc = std::fma(static_cast<float>(sum), scale, acc);
        if (f.has_min) mins = std::fma(lane_float(f, group + quant_bytes + panel_scale_bytes(f), r), ag[g].min, mins);
      }
      a.y[t * a.ldy + r] = f.has_min ? acc + mins : acc;
    }
  }
}

}  // namespace kestrel::kernels::ref
