// AMX-INT8 panel GEMM (layout and summation order: kernels/packed_gemm.h).
// Per group of 32 (16) elements and 16 tokens, one tdpbsud multiplies
//   A = the 16 tokens' activation quants [16 tokens, G bytes] (signed), read in
//       place from the quantized activation rows (tileloadd takes a row stride),
//   B = the panel's quants [G/4, 64 bytes] (unsigned): exactly the panel's
//       vector layout (lane r = 4 consecutive quants of row r), the 4-bit
//       formats unpacked to bytes once per call,
// into C [16 tokens, 16 rows] int32; AVX-512 then applies the group's offset,
// scales and min to 16 float accumulators (one per token), as the VNNI kernel
// does, so both give the same bits. Two C tiles alternate so the tile unit
// works on group g+1 while the vector units scale group g.
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/amx/amx_kernels.h"
#include "kernels/avx512/avx512-inl.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/panel_types.h"

namespace kestrel::kernels::amx {
namespace {

constexpr int kTileTokens = 16;

// Palette 1 tile configuration: 64 bytes, read whole by ldtilecfg.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

// Why inline asm: g++ 12 declares the _tile_loadconfig builtin as reading only 8
// of the 64 bytes, so it may drop the stores that set colsb/rows (llama.cpp built
// with g++ 12 dies of SIGILL that way). The "m" operand is the whole struct.
inline void load_config(const TileConfig& cfg) { __asm__ volatile("ldtilecfg %0" : : "m"(cfg)); }

// tmm0, tmm1: C [16 tokens, 16 int32]; tmm2, tmm4: A [16 tokens, G bytes];
// tmm3, tmm5: B [G/4 rows, 64 bytes].
TileConfig gemm_config(int group) {
  TileConfig c;
  for (int t : {0, 1}) {
    c.rows[t] = kTileTokens;
    c.colsb[t] = 64;
  }
  for (int t : {2, 4}) {
    c.rows[t] = kTileTokens;
    c.colsb[t] = static_cast<uint16_t>(group);
  }
  for (int t : {3, 5}) {
    c.rows[t] = static_cast<uint8_t>(group / 4);
    c.colsb[t] = 64;
  }
  return c;
}

struct FreeAligned {
  void operator()(uint8_t* p) const { std::free(p); }
};

// Per-thread buffer for the unpacked 4-bit quants of one panel (512 bytes per group).
uint8_t* unpack_buffer(size_t bytes) {
  thread_local std::unique_ptr<uint8_t, FreeAligned> buf;
  thread_local size_t capacity = 0;
  if (bytes > capacity) {
    capacity = (bytes + 4095) & ~size_t{4095};
    buf.reset(static_cast<uint8_t*>(std::aligned_alloc(64, capacity)));
  }
  return buf.get();
}

// The panel's 4-bit groups as B tiles: group g -> 8 rows of 64 bytes, rows 0..3
// the low nibbles of vectors 0..3 (elements 0..15), rows 4..7 the high ones.
void unpack_nibbles(const PanelFormat& f, const uint8_t* panel, int64_t n_groups, uint8_t* out) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint8_t* src = panel + static_cast<size_t>(g) * f.group_bytes;
    uint8_t* dst = out + static_cast<size_t>(g) * 512;
    for (int j = 0; j < 4; ++j) {
      const __m512i raw = _mm512_loadu_si512(src + 64 * j);
      _mm512_store_si512(dst + 64 * j, _mm512_and_si512(raw, low4));
      _mm512_store_si512(dst + 256 + 64 * j, _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4));
    }
  }
}

template <bool kOffset, bool kMin>
struct Epilogue {
  // acc[m] += float(C[m] + offset_sum) * (scale * ascale) [+ min * amin] for the 16 tokens.
  static inline void apply(__m512 (&acc)[kTileTokens], const int32_t* c, const uint8_t* scales,
                           const ActGroup* const* ag, int64_t g) {
    const __m512 ws = _mm512_loadu_ps(scales);
    for (int m = 0; m < kTileTokens; ++m) {
      __m512i s = _mm512_load_si512(c + 16 * m);
      if constexpr (kOffset) s = _mm512_add_epi32(s, _mm512_set1_epi32(ag[m][g].offset_sum));
      const __m512 scale = _mm512_mul_ps(ws, _mm512_set1_ps(ag[m][g].scale));
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[m]);
    }
    if constexpr (kMin) {
      const __m512 wm = _mm512_loadu_ps(scales + 64);
      for (int m = 0; m < kTileTokens; ++m) acc[m] = _mm512_fmadd_ps(wm, _mm512_set1_ps(ag[m][g].min), acc[m]);
    }
  }
};

template <bool kOffset, bool kMin>
void tiles(const PanelFormat& f, const PanelGemmArgs& a, const uint8_t* b_base, size_t b_stride,
           size_t scale_offset, int64_t n_tiles) {
  const int64_t n_groups = a.cols / f.group;
  const int gpb = f.act_groups_per_block;
  alignas(64) int32_t cbuf[2][kTileTokens * 16];
  auto act_offset = [&](int64_t g) {
    return static_cast<size_t>(g / gpb) * static_cast<size_t>(f.act_block_bytes) + f.act_qs_offset +
           static_cast<size_t>(g % gpb * f.group);
  };
  const auto stride = static_cast<long>(a.act_stride);
  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    const int64_t t0 = tile * kTileTokens;
    const uint8_t* act = a.act + static_cast<size_t>(t0) * a.act_stride;
    const ActGroup* ag[kTileTokens];
    for (int m = 0; m < kTileTokens; ++m) ag[m] = a.groups + static_cast<size_t>(t0 + m) * a.groups_stride;
    __m512 acc[kTileTokens];
    for (auto& v : acc) v = _mm512_setzero_ps();

    // Group g into tile pair (even: tmm0 <- tmm2 x tmm3, odd: tmm1 <- tmm4 x tmm5).
    auto issue = [&](int64_t g) {
      const uint8_t* bq = b_base + static_cast<size_t>(g) * b_stride;
      if (g % 2 == 0) {
        _tile_zero(0);
        _tile_loadd(2, act + act_offset(g), stride);
        _tile_loadd(3, bq, 64);
        _tile_dpbsud(0, 2, 3);
        _tile_stored(0, cbuf[0], 64);
      } else {
        _tile_zero(1);
        _tile_loadd(4, act + act_offset(g), stride);
        _tile_loadd(5, bq, 64);
        _tile_dpbsud(1, 4, 5);
        _tile_stored(1, cbuf[1], 64);
      }
    };
    issue(0);
    for (int64_t g = 0; g < n_groups; ++g) {
      if (g + 1 < n_groups) issue(g + 1);
      const uint8_t* scales = a.panel + static_cast<size_t>(g) * f.group_bytes + scale_offset;
      Epilogue<kOffset, kMin>::apply(acc, cbuf[g % 2], scales, ag, g);
    }
    const __mmask16 rows = static_cast<__mmask16>((1u << a.n_rows) - 1);
    for (int m = 0; m < kTileTokens; ++m) _mm512_mask_storeu_ps(a.y + (t0 + m) * a.ldy, rows, acc[m]);
  }
}

}  // namespace

void panel_gemm(const PanelFormat& f, const PanelGemmArgs& a) {
  const int64_t n_tiles = a.n_tokens / kTileTokens;
  if (n_tiles > 0) {
    const int64_t n_groups = a.cols / f.group;
    const size_t quant_bytes = static_cast<size_t>(f.nibbles ? f.group / 2 : f.group) * kPanelRows;
    const uint8_t* b_base = a.panel;
    size_t b_stride = f.group_bytes;
    if (f.nibbles) {
      uint8_t* buf = unpack_buffer(static_cast<size_t>(n_groups) * 512);
      unpack_nibbles(f, a.panel, n_groups, buf);
      b_base = buf;
      b_stride = 512;
    }
    const TileConfig cfg = gemm_config(f.group);
    load_config(cfg);
    if (f.offset != 0)
      tiles<true, false>(f, a, b_base, b_stride, quant_bytes, n_tiles);
    else if (f.has_min)
      tiles<false, true>(f, a, b_base, b_stride, quant_bytes, n_tiles);
    else
      tiles<false, false>(f, a, b_base, b_stride, quant_bytes, n_tiles);
    _tile_release();
  }
  if (n_tiles * kTileTokens < a.n_tokens) avx512::panel_gemm_from(f, a, n_tiles * kTileTokens);
}

void tile_selftest(const int8_t* a, const uint8_t* b, int32_t* c) {
  TileConfig cfg;
  for (int t = 0; t < 3; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  load_config(cfg);
  _tile_zero(0);
  _tile_loadd(1, a, 64);
  _tile_loadd(2, b, 64);
  _tile_dpbsud(0, 1, 2);
  _tile_stored(0, c, 64);
  _tile_release();
}

}  // namespace kestrel::kernels::amx
