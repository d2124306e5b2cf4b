// Panel formats, repacking, activation group data, and kernel dispatch for the
// batched matmul (see packed_gemm.h for the layout).
#include "kernels/packed_gemm.h"

#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/amx/amx_kernels.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/avx512/avx512_kernels.h"
#include "platform/dispatch.h"
#include "kernels/blocks.h"

namespace kestrel::kernels {
namespace {

// A format with its group size in bytes filled in: quants (nibble plane, then
// the high-bit plane of the 5- and 6-bit formats), then the scale vector, then
// the min vector for formats with a min.
constexpr PanelFormat sized(PanelFormat f) {
  f.group_bytes = panel_quant_bytes(f) + panel_scale_bytes(f) * (f.has_min ? 2 : 1);
  return f;
}

// Activation block geometry: Q8_0 {d; qs[32]}, Q8_1 {d; s; qs[32]}, Q8_K {d; qs[256]; bsums}.
// The K formats keep float scales: d * sc is not an F16 value. Q6_K keeps its
// GGUF scales instead (int8 per group, F16 d per super-block) and its quants at
// 6 bits: 210 bytes per 256 weights, as in the file (its 8-bit panels with float
// scales took 320, 1.52x, too many for decode to beat vec_dot).
// Fields: group, nibbles, has_min, offset, half_scales, (group_bytes), act block
// bytes, act qs offset, act groups per block, high_bits, sub_scales, super_groups,
// nonlinear.
constexpr PanelFormat kQ4_0 = sized({32, true, false, -8, true, 0, sizeof(BlockQ8_0), 2, 1, 0, false, 0, false});
constexpr PanelFormat kQ4_1 = sized({32, true, true, 0, true, 0, sizeof(BlockQ8_1), 4, 1, 0, false, 0, false});
constexpr PanelFormat kQ5_0 = sized({32, true, false, -16, true, 0, sizeof(BlockQ8_0), 2, 1, 1, false, 0, false});
constexpr PanelFormat kQ5_1 = sized({32, true, true, 0, true, 0, sizeof(BlockQ8_1), 4, 1, 1, false, 0, false});
constexpr PanelFormat kQ8_0 = sized({32, false, false, -128, true, 0, sizeof(BlockQ8_0), 2, 1, 0, false, 0, false});
// Q4_K: its nibbles with its GGUF 6-bit scales and mins as int8 and F16 d and
// dmin per 256: 4.625 bits per weight (the file's 4.5). Float scales and mins
// per group took 6: decode read 1.3x the file's bytes, and batches paid a
// float step per group where the int8 scales join the widening multiply.
constexpr PanelFormat kQ4_K = sized({32, true, true, 0, false, 0, sizeof(BlockQ8K), 4, 8, 0, true, 8, false});
// Q5_K: Q4_K's nibbles plus the fifth-bit plane, its GGUF 6-bit scales and mins
// as int8 with F16 d and dmin per 256: 5.625 bits per weight (the file's 5.5).
constexpr PanelFormat kQ5_K = sized({32, true, true, 0, false, 0, sizeof(BlockQ8K), 4, 8, 1, true, 8, false});
// Q2_K and Q3_K: their 2- and 3-bit quants in the nibble plane (4 bits; a
// plane of their own width is still to do), GGUF scales as Q6_K's.
constexpr PanelFormat kQ2_K = sized({16, true, true, 0, false, 0, sizeof(BlockQ8K), 4, 16, 0, true, 16, false});
constexpr PanelFormat kQ3_K = sized({16, true, false, -4, false, 0, sizeof(BlockQ8K), 4, 16, 0, true, 16, false});
// IQ4_NL: Q4_0's layout (indices in the nibbles, F16 scale); IQ4_XS: the same
// nibbles with its int8 sub-scales (ls - 32) and F16 d per 256, as Q6_K's.
constexpr PanelFormat kIQ4_NL = sized({32, true, false, -128, true, 0, sizeof(BlockQ8_0), 2, 1, 0, false, 0, true});
constexpr PanelFormat kIQ4_XS = sized({32, true, false, -128, false, 0, sizeof(BlockQ8K), 4, 8, 0, true, 8, true});
static_assert(kIQ4_NL.group_bytes == 16 * 18);
constexpr PanelFormat kQ6_K = sized({16, true, false, -32, false, 0, sizeof(BlockQ8K), 4, 16, 2, true, 16, false});
static_assert(kQ4_0.group_bytes == 16 * 18 && kQ8_0.group_bytes == 16 * 34 && kQ4_K.group_bytes == 16 * 18);
// As in the GGUF rows: Q5_0 22 and Q5_1 24 bytes per 32 weights, Q6_K 210 per 256.
static_assert(kQ5_0.group_bytes == 16 * 22 && kQ5_1.group_bytes == 16 * 24);
static_assert(kQ6_K.group_bytes * 16 + 32 == 16 * 210);
static_assert(kQ6_K.group * kQ6_K.high_bits == 32 && kQ5_0.group * kQ5_0.high_bits == 32);

// One group of one weight row as unsigned quants (q + offset is the signed value),
// its scale and its min; for sub_scales formats the scale's two factors
// (scale == d * sc) instead.
struct RowGroup {
  uint8_t q[32];
  float scale;
  float min;
  int8_t sc, m;
  uint16_t d, dmin;  // F16
};

// Bit k of `bits` to byte k (0 or 1): the byte copied to all 8 lanes, lane k
// keeping its bit k, and + 0x7F carrying any set bit to bit 7 of its lane.
inline uint64_t spread_bits(uint32_t bits) {
  const uint64_t lanes = (static_cast<uint64_t>(bits & 0xFF) * 0x0101010101010101ull) & 0x8040201008040201ull;
  return ((lanes + 0x7F7F7F7F7F7F7F7Full) >> 7) & 0x0101010101010101ull;
}

// Q5_0/Q5_1 element i: low nibble of qs[i % 16] (high nibble from 16 on), fifth
// bit i of the little-endian qh.
template <typename Block>
void unpack_q5_bits(const Block& b, RowGroup* out) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  // 8 elements per 64-bit word: nibbles by mask and shift, fifth bits spread.
  for (int i = 0; i < 16; i += 8) {
    uint64_t qs;
    std::memcpy(&qs, b.qs + i, 8);
    const uint64_t lo = (qs & 0x0F0F0F0F0F0F0F0Full) | (spread_bits(qh >> i) << 4);
    const uint64_t hi = ((qs >> 4) & 0x0F0F0F0F0F0F0F0Full) | (spread_bits(qh >> (i + 16)) << 4);
    std::memcpy(out->q + i, &lo, 8);
    std::memcpy(out->q + i + 16, &hi, 8);
  }
}

void unpack_q5_0(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ5_0*>(row)[g];
  unpack_q5_bits(b, out);
  out->scale = fp16_to_f32(b.d);
  out->min = 0;
}

void unpack_q5_1(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ5_1*>(row)[g];
  unpack_q5_bits(b, out);
  out->scale = fp16_to_f32(b.d);
  out->min = fp16_to_f32(b.m);
}

void unpack_q4_0(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ4_0*>(row)[g];
  for (int i = 0; i < 16; ++i) {
    out->q[i] = b.qs[i] & 0xF;
    out->q[i + 16] = b.qs[i] >> 4;
  }
  out->scale = fp16_to_f32(b.d);
  out->min = 0;
}

void unpack_q4_1(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ4_1*>(row)[g];
  for (int i = 0; i < 16; ++i) {
    out->q[i] = b.qs[i] & 0xF;
    out->q[i + 16] = b.qs[i] >> 4;
  }
  out->scale = fp16_to_f32(b.d);
  out->min = fp16_to_f32(b.m);
}

void unpack_q8_0(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[g];
  for (int i = 0; i < 32; ++i) out->q[i] = static_cast<uint8_t>(b.qs[i] + 128);
  out->scale = fp16_to_f32(b.d);
  out->min = 0;
}

// Sub-block j of a Q4_K super-block: x = d*sc*q - dmin*m.
void unpack_q4_K(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ4K*>(row)[g / 8];
  const int j = static_cast<int>(g % 8);
  uint8_t sc, m;
  k_scale_min(j, b.scales, &sc, &m);
  const uint8_t* qs = b.qs + 32 * (j / 2);
  const int shift = 4 * (j % 2);
  for (int l = 0; l < 32; ++l) out->q[l] = (qs[l] >> shift) & 0xF;
  out->sc = static_cast<int8_t>(sc);
  out->m = static_cast<int8_t>(-m);  // min = dmin * (-m)
  out->d = b.d;
  out->dmin = b.dmin;
}

// Sub-block j of a Q5_K super-block: Q4_K's nibbles and scales, and the fifth
// bit of element l at bit j of qh[l].
void unpack_q5_K(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ5K*>(row)[g / 8];
  const int j = static_cast<int>(g % 8);
  uint8_t sc, m;
  k_scale_min(j, b.scales, &sc, &m);
  const uint8_t* qs = b.qs + 32 * (j / 2);
  const int shift = 4 * (j % 2);
  for (int l = 0; l < 32; ++l) out->q[l] = static_cast<uint8_t>(((qs[l] >> shift) & 0xF) | (((b.qh[l] >> j) & 1) << 4));
  out->sc = static_cast<int8_t>(sc);
  out->m = static_cast<int8_t>(-m);  // min = dmin * (-m)
  out->d = b.d;
  out->dmin = b.dmin;
}

// Sub-block j (16 elements) of a Q2_K super-block: x = d*sc*q - dmin*m, q in
// 0..3 (element 128h + 32k + l at bits 2k of qs[32h + l]).
void unpack_q2_K(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ2K*>(row)[g / 16];
  const int j = static_cast<int>(g % 16);
  // Elements 16j + i share h = j / 8 and k = j % 8 / 2: 16 consecutive qs
  // bytes, one shift, 8 elements per 64-bit word.
  const uint8_t* qs = b.qs + 32 * (j / 8) + 16 * (j % 2);
  const int shift = 2 * (j % 8 / 2);
  for (int i = 0; i < 16; i += 8) {
    uint64_t w;
    std::memcpy(&w, qs + i, 8);
    const uint64_t q = (w >> shift) & 0x0303030303030303ull;
    std::memcpy(out->q + i, &q, 8);
  }
  out->sc = static_cast<int8_t>(b.scales[j] & 0xF);
  out->m = static_cast<int8_t>(-(b.scales[j] >> 4));  // min = dmin * m, stored negated
  out->d = b.d;
  out->dmin = b.dmin;
}

// Sub-block j of a Q3_K super-block: x = d*(sc-32)*(q - 4), q = low 2 bits plus
// 4 where the hmask bit is set, in 0..7.
void unpack_q3_K(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ3K*>(row)[g / 16];
  const int j = static_cast<int>(g % 16);
  // Element 16j + i (h = j / 8, k = j % 8 / 2, l = 16 (j % 2) + i): low bits at
  // 2k of qs[32h + l], high bit at 4h + k of hmask[l]; 8 elements per 64-bit
  // word (shifts of at most 7 and per-byte masks keep each byte's own bits).
  const int h = j / 8, k = j % 8 / 2;
  const uint8_t* qs = b.qs + 32 * h + 16 * (j % 2);
  const uint8_t* hm = b.hmask + 16 * (j % 2);
  for (int i = 0; i < 16; i += 8) {
    uint64_t low, high;
    std::memcpy(&low, qs + i, 8);
    std::memcpy(&high, hm + i, 8);
    const uint64_t q =
        ((low >> (2 * k)) & 0x0303030303030303ull) | (((high >> (4 * h + k)) & 0x0101010101010101ull) << 2);
    std::memcpy(out->q + i, &q, 8);
  }
  out->sc = static_cast<int8_t>(q3_scale(b.scales, j) - 32);
  out->d = b.d;
}

// IQ4_NL block g: the indices as Q4_0's nibbles, its F16 d.
void unpack_iq4_nl(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockIQ4NL*>(row)[g];
  for (int i = 0; i < 16; ++i) {
    out->q[i] = b.qs[i] & 0xF;
    out->q[i + 16] = b.qs[i] >> 4;
  }
  out->scale = fp16_to_f32(b.d);
  out->min = 0;
}

// IQ4_XS sub-block j: indices as IQ4_NL's, scale d * (ls - 32).
void unpack_iq4_xs(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockIQ4XS*>(row)[g / 8];
  const int j = static_cast<int>(g % 8);
  const uint8_t* qs = b.qs + 16 * j;
  for (int i = 0; i < 16; ++i) {
    out->q[i] = qs[i] & 0xF;
    out->q[i + 16] = qs[i] >> 4;
  }
  out->sc = static_cast<int8_t>(iq4xs_scale(b, j) - 32);
  out->d = b.d;
}

// Sub-block j (16 elements) of a Q6_K super-block: x = d*sc*(q - 32), q in 0..63.
// Element 128h + 32r + l: low 4 bits in ql[64h + l + 32*(r&1)] (high nibble when
// r >= 2), high 2 bits at bit 2r of qh[32h + l].
void unpack_q6_K(const uint8_t* row, int64_t g, RowGroup* out) {
  const auto& b = reinterpret_cast<const BlockQ6K*>(row)[g / 16];
  const int j = static_cast<int>(g % 16);
  // Elements 16j .. 16j + 15 share h = j / 8 and r = j % 8 / 2, so every
  // element takes the same bytes' offsets and shifts (l = 16 (j % 2) + i).
  const int h = j / 8, r = j % 8 / 2;
  const uint8_t* ql = b.ql + 64 * h + 16 * (j % 2) + 32 * (r & 1);
  const uint8_t* qh = b.qh + 32 * h + 16 * (j % 2);
  // Eight elements per 64-bit word: a shift by at most 6 and a per-byte mask
  // keep each byte's own bits (lo: bits 0-3 or 4-7; hi: bits 2r, 2r + 1).
  const int lo_shift = 4 * (r >> 1), hi_shift = 2 * r;
  for (int i = 0; i < 16; i += 8) {
    uint64_t lo, hi;
    std::memcpy(&lo, ql + i, 8);
    std::memcpy(&hi, qh + i, 8);
    const uint64_t q = ((lo >> lo_shift) & 0x0F0F0F0F0F0F0F0Full) | (((hi >> hi_shift) & 0x0303030303030303ull) << 4);
    std::memcpy(out->q + i, &q, 8);
  }
  out->sc = b.scales[j];
  out->d = b.d;
}

using UnpackFn = void (*)(const uint8_t* row, int64_t g, RowGroup* out);
using PackFn = void (*)(const uint8_t* w, size_t row_stride, int64_t rows, int64_t cols, int64_t panel_begin,
                        int64_t panel_end, uint8_t* out);

// Rows [16p, 16p + 16) of panels [panel_begin, panel_end), one format: the
// format and its unpacking are template arguments, so that every size, flag and
// index below is a constant and the unpacking is inlined (as a runtime loop
// over a PanelFormat and a function pointer, a load repacked Q6_K at 74 MB/s,
// most of Qwen2.5-1.5B's start-up, on AMD Zen 1).
template <const PanelFormat& kFormat, UnpackFn kUnpack>
void pack_format(const uint8_t* w, size_t row_stride, int64_t rows, int64_t cols, int64_t panel_begin,
                 int64_t panel_end, uint8_t* out) {
  constexpr const PanelFormat& f = kFormat;
  const int64_t n_groups = cols / f.group;
  const size_t quant_bytes = panel_quant_bytes(f);
  const size_t scale_bytes = panel_scale_bytes(f);
  RowGroup rg;
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    uint8_t* panel = out + static_cast<size_t>(p) * panel_bytes(f, cols);
    // A whole panel has every byte written below; only the last one's missing
    // rows must read as zeros (a memset of every panel touched a load's
    // gigabyte of fresh pages twice).
    if ((p + 1) * kPanelRows > rows) std::memset(panel, 0, panel_bytes(f, cols));
    for (int r = 0; r < kPanelRows; ++r) {
      const int64_t row = p * kPanelRows + r;
      if (row >= rows) break;
      const uint8_t* src = w + static_cast<size_t>(row) * row_stride;
      for (int64_t g = 0; g < n_groups; ++g) {
        uint8_t* dst = panel + static_cast<size_t>(g) * f.group_bytes;
        kUnpack(src, g, &rg);
        // Byte i of the row's group (nibble pair i / i + G/2, or quant i) goes to
        // vector i / 4, lane r, byte i % 4.
        constexpr int n_bytes = f.nibbles ? f.group / 2 : f.group;
        // The row's bytes are formed in one (vectorised) pass, then stored 4 at
        // a time, one lane of each vector.
        uint8_t bytes[n_bytes];
        for (int i = 0; i < n_bytes; ++i)
          bytes[i] = f.nibbles ? static_cast<uint8_t>((rg.q[i] & 0xF) | ((rg.q[i + f.group / 2] & 0xF) << 4)) : rg.q[i];
        for (int k = 0; k < n_bytes / 4; ++k) std::memcpy(dst + k * 64 + r * 4, bytes + 4 * k, 4);
        // High bits of element 4k + b: lane r, byte b, bits high_bits * k (only
        // this row's group writes these 4 bytes: a store, not an or). Four
        // elements per 32-bit word: (word >> 4) & 0x0F0F0F0F is each byte's
        // high part (high_bits wide), and since group * high_bits == 32 the
        // last shift, high_bits * (group / 4 - 1), leaves it inside its byte.
        if constexpr (f.high_bits != 0) {
          uint32_t hb = 0;
          for (int k = 0; k < f.group / 4; ++k) {
            uint32_t word;
            std::memcpy(&word, rg.q + 4 * k, 4);
            hb |= ((word >> 4) & 0x0F0F0F0Fu) << (f.high_bits * k);
          }
          std::memcpy(dst + panel_nibble_bytes(f) + r * 4, &hb, 4);
        }
        if constexpr (f.sub_scales) {  // the GGUF's own int8 scales and F16 d, dmin
          std::memcpy(dst + quant_bytes + r, &rg.sc, 1);
          if constexpr (f.has_min) std::memcpy(dst + quant_bytes + scale_bytes + r, &rg.m, 1);
          if (g % f.super_groups == 0) {  // d and dmin are the super-block's: stored once
            uint8_t* super =
                panel + panel_super_offset(f, cols) + static_cast<size_t>(g / f.super_groups) * panel_super_bytes(f);
            std::memcpy(super + 2 * r, &rg.d, 2);
            if constexpr (f.has_min) std::memcpy(super + 32 + 2 * r, &rg.dmin, 2);
          }
        } else if constexpr (f.half_scales) {  // exact: these scales and mins were F16 in the file
          const uint16_t s = f32_to_fp16(rg.scale), m = f32_to_fp16(rg.min);
          std::memcpy(dst + quant_bytes + 2 * r, &s, 2);
          if constexpr (f.has_min) std::memcpy(dst + quant_bytes + scale_bytes + 2 * r, &m, 2);
        } else {
          std::memcpy(dst + quant_bytes + 4 * r, &rg.scale, 4);
          if constexpr (f.has_min) std::memcpy(dst + quant_bytes + scale_bytes + 4 * r, &rg.min, 4);
        }
      }
    }
  }
}

// Panel kernels per Isa level (platform/dispatch.h): AVX-512 VNNI, whose
// vpdpbusd the panels' u8 x s8 products are laid out for, and AVX2, which forms
// the same products with vpmaddubsw + vpmaddwd; none for scalar (matmul keeps
// vec_dot there). AMX tiles sit on top of the AVX-512 level and need the
// AMX-INT8 feature as well.
constexpr PerIsa<PanelGemmFn> kSimd = {nullptr, avx2::panel_gemm, avx512::panel_gemm};
constexpr PerIsa<PanelGemmFn> kAmx = {nullptr, nullptr, amx::panel_gemm};
// The AMX kernel reads 4- and 8-bit quants with float or F16 scale vectors only:
// the 5/6-bit planes and int8 sub-scales have no tile version (yet).
constexpr PerIsa<PanelGemmFn> kNoAmx = {nullptr, nullptr, nullptr};

struct Entry {
  DType type;
  const PanelFormat* format;
  PackFn pack;
  PerIsa<PanelGemmFn> gemm;
  PerIsa<PanelGemmFn> gemm_amx;
};

const Entry kEntries[] = {
    {DType::Q4_0, &kQ4_0, pack_format<kQ4_0, unpack_q4_0>, kSimd, kAmx},
    {DType::Q4_1, &kQ4_1, pack_format<kQ4_1, unpack_q4_1>, kSimd, kAmx},
    {DType::Q5_0, &kQ5_0, pack_format<kQ5_0, unpack_q5_0>, kSimd, kNoAmx},
    {DType::Q5_1, &kQ5_1, pack_format<kQ5_1, unpack_q5_1>, kSimd, kNoAmx},
    {DType::Q8_0, &kQ8_0, pack_format<kQ8_0, unpack_q8_0>, kSimd, kAmx},
    {DType::Q2_K, &kQ2_K, pack_format<kQ2_K, unpack_q2_K>, kSimd, kNoAmx},
    {DType::Q3_K, &kQ3_K, pack_format<kQ3_K, unpack_q3_K>, kSimd, kNoAmx},
    {DType::Q4_K, &kQ4_K, pack_format<kQ4_K, unpack_q4_K>, kSimd, kNoAmx},
    {DType::Q5_K, &kQ5_K, pack_format<kQ5_K, unpack_q5_K>, kSimd, kNoAmx},
    {DType::Q6_K, &kQ6_K, pack_format<kQ6_K, unpack_q6_K>, kSimd, kNoAmx},
    {DType::IQ4_NL, &kIQ4_NL, pack_format<kIQ4_NL, unpack_iq4_nl>, kSimd, kNoAmx},
    {DType::IQ4_XS, &kIQ4_XS, pack_format<kIQ4_XS, unpack_iq4_xs>, kSimd, kNoAmx},
};

const Entry* entry(DType type) {
  for (const Entry& e : kEntries)
    if (e.type == type) return &e;
  return nullptr;
}

const Entry& checked_entry(DType type) {
  const Entry* e = entry(type);
  if (!e) fail("no panel layout for tensor type ", dtype_name(type));
  return *e;
}

}  // namespace

const PanelFormat* panel_format(DType type) {
  const Entry* e = entry(type);
  return e ? e->format : nullptr;
}

size_t panel_bytes(const PanelFormat& f, int64_t cols) {
  const size_t super = f.sub_scales ? static_cast<size_t>(cols / f.group / f.super_groups) * panel_super_bytes(f) : 0;
  return panel_super_offset(f, cols) + super;
}

size_t packed_matrix_bytes(const PanelFormat& f, int64_t rows, int64_t cols) {
  return panel_bytes(f, cols) * static_cast<size_t>((rows + kPanelRows - 1) / kPanelRows);
}

void pack_panels(DType type, const uint8_t* w, size_t row_stride, int64_t rows, int64_t cols,
                 int64_t panel_begin, int64_t panel_end, uint8_t* out) {
  checked_entry(type).pack(w, row_stride, rows, cols, panel_begin, panel_end, out);
}

void activation_groups(DType type, const void* act_row, int64_t cols, ActGroup* out) {
  const Entry& e = checked_entry(type);
  const int64_t n_groups = cols / e.format->group;
  switch (type) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
    case DType::IQ4_NL: {
      const auto* b = static_cast<const BlockQ8_0*>(act_row);
      for (int64_t g = 0; g < n_groups; ++g) {
        int sum = 0;
        for (int i = 0; i < kQK; ++i) sum += b[g].qs[i];
        out[g] = {fp16_to_f32(b[g].d), e.format->offset * sum, 0.0f};
      }
      break;
    }
    case DType::Q4_1:
    case DType::Q5_1: {
      const auto* b = static_cast<const BlockQ8_1*>(act_row);
      for (int64_t g = 0; g < n_groups; ++g) out[g] = {fp16_to_f32(b[g].d), 0, fp16_to_f32(b[g].s)};
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const auto* b = static_cast<const BlockQ8K*>(act_row);
      for (int64_t g = 0; g < n_groups; ++g) {
        const BlockQ8K& blk = b[g / 8];
        const int j = static_cast<int>(g % 8);
        out[g] = {blk.d, 0, blk.d * static_cast<float>(blk.bsums[2 * j] + blk.bsums[2 * j + 1])};
      }
      break;
    }
    case DType::IQ4_XS: {
      const auto* b = static_cast<const BlockQ8K*>(act_row);
      for (int64_t g = 0; g < n_groups; ++g) {
        const BlockQ8K& blk = b[g / 8];
        const int j = static_cast<int>(g % 8);
        out[g] = {blk.d, e.format->offset * (blk.bsums[2 * j] + blk.bsums[2 * j + 1]), 0.0f};
      }
      break;
    }
    case DType::Q2_K: {  // the min term per 16 elements
      const auto* b = static_cast<const BlockQ8K*>(act_row);
      for (int64_t g = 0; g < n_groups; ++g) {
        const BlockQ8K& blk = b[g / 16];
        out[g] = {blk.d, 0, blk.d * static_cast<float>(blk.bsums[g % 16])};
      }
      break;
    }
    case DType::Q3_K:
    case DType::Q6_K: {
      const auto* b = static_cast<const BlockQ8K*>(act_row);
      for (int64_t g = 0; g < n_groups; ++g) {
        const BlockQ8K& blk = b[g / 16];
        out[g] = {blk.d, e.format->offset * blk.bsums[g % 16], 0.0f};
      }
      break;
    }
    default:
      fail("no panel layout for tensor type ", dtype_name(type));
  }
}

size_t act_tiles_bytes(const PanelFormat& f, int64_t cols, int64_t n_tokens) {
  return static_cast<size_t>(n_tokens / kAmxTileTokens * kAmxTileTokens * cols);
}

void pack_act_tiles(const PanelFormat& f, const uint8_t* act, size_t act_stride, int64_t cols, int64_t n_tokens,
                    uint8_t* out) {
  const int64_t n_groups = cols / f.group;
  const int64_t n_tiles = n_tokens / kAmxTileTokens;
  for (int64_t tile = 0; tile < n_tiles; ++tile)
    for (int64_t g = 0; g < n_groups; ++g) {
      const size_t off = static_cast<size_t>(g / f.act_groups_per_block) * static_cast<size_t>(f.act_block_bytes) +
                         static_cast<size_t>(f.act_qs_offset) + static_cast<size_t>(g % f.act_groups_per_block * f.group);
      for (int m = 0; m < kAmxTileTokens; ++m) {
        std::memcpy(out, act + static_cast<size_t>(tile * kAmxTileTokens + m) * act_stride + off,
                    static_cast<size_t>(f.group));
        out += f.group;
      }
    }
}

PanelGemmFn panel_gemm(DType type, Isa isa) {
  const Entry* e = entry(type);
  return e ? pick_for_isa(e->gemm, isa) : nullptr;
}

PanelGemmFn panel_gemm_amx(DType type, Isa isa) {
  const Entry* e = entry(type);
  return e && amx::available() ? pick_for_isa(e->gemm_amx, isa) : nullptr;
}

}  // namespace kestrel::kernels
