// AMX-INT8 panel GEMM (layout and summation order: kernels/packed_gemm.h).
// Per group of 32 (16) elements and 16 tokens, one tdpbsud multiplies
//   A = the 16 tokens' activation quants [16 tokens, G bytes] (signed), from the
//       regrouped copy (pack_act_tiles: one contiguous load) when the caller
//       made one, else in place from the activation rows (tileloadd's stride),
//   B = the panel's quants [G/4, 64 bytes] (unsigned): exactly the panel's
//       vector layout (lane r = 4 consecutive quants of row r), the 4-bit
//       formats unpacked to bytes once per call,
// into C [16 tokens, 16 rows] int32; AVX-512 then applies the group's offset
// and scales to 16 float accumulators (one per token), as the VNNI kernel does,
// and adds the min terms the same way afterwards, so both give the same bits. The tile unit runs one batch of groups
// ahead of the vector units (see tiles()).
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/amx/amx_kernels.h"
#include "kernels/avx512/avx512-inl.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/panel_types.h"

namespace kestrel::kernels::amx {
namespace {

constexpr int kTileTokens = kAmxTileTokens;

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

// tmm0..3: C [16 tokens, 16 int32]; tmm4, tmm6: A [16 tokens, G bytes];
// tmm5, tmm7: B [G/4 rows, 64 bytes].
TileConfig gemm_config(int group) {
  TileConfig c;
  for (int t : {0, 1, 2, 3}) {
    c.rows[t] = kTileTokens;
    c.colsb[t] = 64;
  }
  for (int t : {4, 6}) {
    c.rows[t] = kTileTokens;
    c.colsb[t] = static_cast<uint16_t>(group);
  }
  for (int t : {5, 7}) {
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

template <bool kOffset>
struct Epilogue {
  // acc[m] += float(C[m] + offset_sum) * (scale * ascale) for the 16 tokens (the
  // min terms are added afterwards, by avx512::panel_add_mins).
  static inline void apply(__m512 (&acc)[kTileTokens], const int32_t* c, const uint8_t* scales, bool half_scales,
                           const ActGroup* const* ag, int64_t g) {
    const __m512 ws = half_scales ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales)))
                                  : _mm512_loadu_ps(scales);
    for (int m = 0; m < kTileTokens; ++m) {
      __m512i s = _mm512_load_si512(c + 16 * m);
      if constexpr (kOffset) s = _mm512_add_epi32(s, _mm512_set1_epi32(ag[m][g].offset_sum));
      const __m512 scale = _mm512_mul_ps(ws, _mm512_set1_ps(ag[m][g].scale));
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[m]);
    }
  }
};

// Groups go through the tile unit kBatch at a time into C tiles tmm0..3; their
// int32 results are stored to one half of cbuf while the vector units scale the
// previous batch from the other half. The lag of one batch lets the tile
// stores reach L1 before the vector loads read them.
constexpr int kBatch = 4;

template <bool kOffset>
void tiles(const PanelFormat& f, const PanelGemmArgs& a, const uint8_t* b_base, size_t b_stride,
           size_t scale_offset, int64_t n_tiles) {
  const int64_t n_groups = a.cols / f.group;
  const int gpb = f.act_groups_per_block;
  alignas(64) int32_t cbuf[2][kBatch][kTileTokens * 16];
  auto act_offset = [&](int64_t g) {
    return static_cast<size_t>(g / gpb) * static_cast<size_t>(f.act_block_bytes) + f.act_qs_offset +
           static_cast<size_t>(g % gpb * f.group);
  };
  // A tiles: from the regrouped copy when there is one (contiguous), else from
  // the activation rows (16 rows act_stride apart).
  const bool packed_act = a.act_tiles != nullptr;
  const auto stride = packed_act ? static_cast<long>(f.group) : static_cast<long>(a.act_stride);
  const size_t tile_act_bytes = static_cast<size_t>(n_groups) * kTileTokens * static_cast<size_t>(f.group);
  auto a_tile = [&](const uint8_t* act, int64_t g) {
    return packed_act ? act + static_cast<size_t>(g) * kTileTokens * static_cast<size_t>(f.group) : act + act_offset(g);
  };
  const int64_t n_batches = (n_groups + kBatch - 1) / kBatch;
  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    const int64_t t0 = tile * kTileTokens;
    const uint8_t* act = packed_act ? a.act_tiles + static_cast<size_t>(tile) * tile_act_bytes
                                    : a.act + static_cast<size_t>(t0) * a.act_stride;
    const ActGroup* ag[kTileTokens];
    for (int m = 0; m < kTileTokens; ++m) ag[m] = a.groups + static_cast<size_t>(t0 + m) * a.groups_stride;
    __m512 acc[kTileTokens];
    for (auto& v : acc) v = _mm512_setzero_ps();

    // Group g: C tile (g % 4) <- A (tmm4 or tmm6) x B (tmm5 or tmm7).
    auto issue_batch = [&](int64_t batch) {
      int32_t(*out)[kTileTokens * 16] = cbuf[batch % 2];
      const int64_t g0 = batch * kBatch;
      // The tile intrinsics are macros that paste their register numbers into
      // the instruction text: the numbers must be literals.
      const uint8_t* b0 = b_base + static_cast<size_t>(g0) * b_stride;
      _tile_zero(0);
      _tile_loadd(4, a_tile(act, g0), stride);
      _tile_loadd(5, b0, 64);
      _tile_dpbsud(0, 4, 5);
      _tile_stored(0, out[0], 64);
      if (g0 + 1 < n_groups) {
        _tile_zero(1);
        _tile_loadd(6, a_tile(act, g0 + 1), stride);
        _tile_loadd(7, b0 + b_stride, 64);
        _tile_dpbsud(1, 6, 7);
        _tile_stored(1, out[1], 64);
      }
      if (g0 + 2 < n_groups) {
        _tile_zero(2);
        _tile_loadd(4, a_tile(act, g0 + 2), stride);
        _tile_loadd(5, b0 + 2 * b_stride, 64);
        _tile_dpbsud(2, 4, 5);
        _tile_stored(2, out[2], 64);
      }
      if (g0 + 3 < n_groups) {
        _tile_zero(3);
        _tile_loadd(6, a_tile(act, g0 + 3), stride);
        _tile_loadd(7, b0 + 3 * b_stride, 64);
        _tile_dpbsud(3, 6, 7);
        _tile_stored(3, out[3], 64);
      }
    };
    issue_batch(0);
    for (int64_t batch = 0; batch < n_batches; ++batch) {
      if (batch + 1 < n_batches) issue_batch(batch + 1);
      const int64_t g0 = batch * kBatch;
      for (int i = 0; i < kBatch && g0 + i < n_groups; ++i) {
        const int64_t g = g0 + i;
        const uint8_t* scales = a.panel + static_cast<size_t>(g) * f.group_bytes + scale_offset;
        Epilogue<kOffset>::apply(acc, cbuf[batch % 2][i], scales, f.half_scales, ag, g);
      }
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
    const size_t quant_bytes = panel_quant_bytes(f);
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
      tiles<true>(f, a, b_base, b_stride, quant_bytes, n_tiles);
    else
      tiles<false>(f, a, b_base, b_stride, quant_bytes, n_tiles);
    _tile_release();
    if (f.has_min) avx512::panel_add_mins(f, a, 0, n_tiles * kTileTokens);
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
