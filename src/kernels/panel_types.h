#pragma once
// Plain data shared by the panel GEMM kernels of every Isa (see packed_gemm.h
// for the layout). Only <cstddef>/<cstdint>: the SIMD translation units include
// this header, and it must not bring inline code they would compile with their
// -m flags (see kernels/blocks.h).
#include <cstddef>
#include <cstdint>

namespace kestrel::kernels {

constexpr int kPanelRows = 16;
constexpr int kAmxTileTokens = 16;  // tokens per AMX tile (its 16 tile rows)

// How a weight format maps onto panels, and where its activation quants live.
struct PanelFormat {
  int group;         // elements per group: 32, or 16 for Q6_K
  bool nibbles;      // 4-bit quants (else 8-bit)
  bool has_min;      // a min vector follows the scale vector
  int32_t offset;    // weight value = scale * (q + offset) [+ min]
  // Scale and min vectors hold 16 F16 values (32 bytes) instead of 16 floats
  // (64): for the formats whose GGUF scales are F16 already (exact), it cuts
  // the bytes decode streams per weight (Q4_0 20 -> 18 per 32 elements, as in
  // the GGUF file; Q4_1 24 -> 20; Q8_0 36 -> 34).
  bool half_scales;
  size_t group_bytes;  // quants + scale (+ min) of one group of a panel
  // Activation rows (the weight's vec_dot_type): group g's int8 quants start at
  // (g / act_groups_per_block) * act_block_bytes + act_qs_offset
  //   + (g % act_groups_per_block) * group.
  int act_block_bytes;
  int act_qs_offset;
  int act_groups_per_block;
  // Quants wider than 4 bits kept at their own width (Q5_0/Q5_1: 1, Q6_K: 2):
  // a plane of their high bits follows the nibble plane, so a panel holds as
  // many bits per weight as the GGUF rows instead of a byte.
  int high_bits;
  // Scales as the K formats store them: per group, one int8 per row (and one
  // for the min); per super-block of `super_groups` groups, 16 F16 d (and 16
  // F16 dmin) at the panel's end: 16 bytes per group instead of 64. The
  // kernels multiply a group's integer sum by sc in int32 and convert once per
  // super-block (packed_gemm.h), at every batch size, as ggml's dot products
  // do; the min is float(dmin) * float(m) (exact).
  bool sub_scales;
  int super_groups;
  // IQ4_NL / IQ4_XS: the nibbles are indices into kIq4nlValues; a quant's
  // unsigned value is kIq4nlValues[index] + 128 (offset -128), looked up by
  // the kernels (vpshufb) after unpacking.
  bool nonlinear;
};

// kIq4nlValues (kernels/blocks.h) + 128: the unsigned quants of the non-linear
// formats' 16 indices.
constexpr uint8_t kIq4nlUnsigned[16] = {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241};

// Bytes of a group's quants, and of its scale (or min) vector.
constexpr size_t panel_nibble_bytes(const PanelFormat& f) {
  return static_cast<size_t>(f.nibbles ? f.group / 2 : f.group) * kPanelRows;
}
// The high-bit plane: per lane r, 4 bytes; bit high_bits * k + i of byte b holds
// bit i of the high part of element 4k + b (so group * high_bits == 32).
constexpr size_t panel_high_bytes(const PanelFormat& f) { return f.high_bits ? 64 : 0; }
constexpr size_t panel_quant_bytes(const PanelFormat& f) { return panel_nibble_bytes(f) + panel_high_bytes(f); }
constexpr size_t panel_scale_bytes(const PanelFormat& f) { return f.sub_scales ? 16 : f.half_scales ? 32 : 64; }
// Where the super-block d (and dmin) vectors start (sub_scales formats): after
// all groups; super-block s at + s * panel_super_bytes, dmin 32 bytes after d.
constexpr size_t panel_super_offset(const PanelFormat& f, int64_t cols) {
  return f.group_bytes * static_cast<size_t>(cols / f.group);
}
constexpr size_t panel_super_bytes(const PanelFormat& f) { return f.sub_scales ? (f.has_min ? 64 : 32) : 0; }

// Per token and group: what the kernels need besides the activation quants.
struct ActGroup {
  float scale;         // the activation's d
  int32_t offset_sum;  // PanelFormat::offset * sum of the group's quants
  float min;           // what the weight's min multiplies: Q8_1's s, or d * sum(quants)
};

// One panel times a batch of activation rows:
//   y[t * ldy + r] = row r of the panel . activation row t,  r < n_rows, t < n_tokens
// act: rows of the activation format, act_stride bytes apart; groups: cols/group
// entries per token, groups_stride entries apart.
struct PanelGemmArgs {
  int64_t cols;
  const uint8_t* panel;
  int n_rows;  // rows of this panel to write (1..16)
  const uint8_t* act;
  size_t act_stride;
  const ActGroup* groups;
  size_t groups_stride;
  int64_t n_tokens;
  float* y;
  int64_t ldy;
  // Optional, AMX only: the activation quants regrouped by 16-token tile (see
  // pack_act_tiles in packed_gemm.h); nullptr: read them from `act`.
  const uint8_t* act_tiles;
};
using PanelGemmFn = void (*)(const PanelFormat& f, const PanelGemmArgs& args);

}  // namespace kestrel::kernels
