// AVX-512 VNNI panel GEMM (layout and summation order: kernels/packed_gemm.h).
// A tile is the panel's 16 rows (one int32 lane each) times C tokens. Per group
// and token: one int32 accumulator started at offset * sum(activation), one
// vpdpbusd per 4 elements with the token's 4 activation bytes broadcast to all
// lanes (a memory operand), then one convert and two float ops to scale the
// group. The weight vectors of a group are loaded and unpacked once per tile
// and serve all C tokens.
#include <algorithm>
#include <cstring>

#include "kernels/avx512/avx512-inl.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/panel_types.h"

namespace kestrel::kernels::avx512 {
namespace {

// Tokens per tile: 8 int32 + 8 float accumulators leave room for the weight
// vectors, and 8 independent vpdpbusd chains cover its latency (5 cycles at 1
// per cycle). Tiles of fewer than 4 tokens split each chain in two.
constexpr int kMaxTokens = 8;
// Small batches read each panel byte once, from DRAM (or L3), at the speed the
// core's outstanding misses allow: prefetching the group 1 KB ahead kept more
// lines in flight and raised Q4_0 decode from 30 to 38 GFLOP/s (9.4 to 12 GB/s)
// and Q8_0 from 19.6 to 21.9 (bench/micro gemm/<type>/vnni/2048x2048/t1, best
// of 5; 2 KB and 4 KB were no better). Batches that reuse the panel from L1
// across token tiles do not need it.
// A second prefetch, into L2 4 KB ahead, raised 4-bit decode again (Q4_0 37.6
// -> 43.1 GFLOP/s, about 12 GB/s: where Q8_0 already was); Q8_0 did not gain
// from it (22.9 -> 21.4-22.0), so the 8-bit formats skip it.
constexpr size_t kPrefetchBytes = 1024;
constexpr size_t kPrefetchL2Bytes = 4096;

inline __m512i bcast32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// A group's 16 scales (or mins), F16 or float (PanelFormat::half_scales).
inline __m512 load_scales(const PanelFormat& f, const uint8_t* p) {
  return f.half_scales ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))
                       : _mm512_loadu_ps(p);
}

// The min terms of tokens [t0, t0 + kC), summed on their own over all groups
// and then added to y (which holds the scaled products).
template <int kC>
void add_mins(const PanelFormat& f, const PanelGemmArgs& a, int64_t t0) {
  const int64_t n_groups = a.cols / f.group;
  const size_t min_offset = panel_quant_bytes(f) + panel_scale_bytes(f);
  const ActGroup* ag[kC];
  __m512 m[kC];
  for (int c = 0; c < kC; ++c) {
    ag[c] = a.groups + static_cast<size_t>(t0 + c) * a.groups_stride;
    m[c] = _mm512_setzero_ps();
  }
  const uint8_t* pw = a.panel + min_offset;
  for (int64_t g = 0; g < n_groups; ++g, pw += f.group_bytes) {
    const __m512 wm = load_scales(f, pw);
    for (int c = 0; c < kC; ++c) m[c] = _mm512_fmadd_ps(wm, _mm512_set1_ps(ag[c][g].min), m[c]);
  }
  const __mmask16 rows = static_cast<__mmask16>((1u << a.n_rows) - 1);
  for (int c = 0; c < kC; ++c) {
    float* y = a.y + (t0 + c) * a.ldy;
    _mm512_mask_storeu_ps(y, rows, _mm512_add_ps(_mm512_maskz_loadu_ps(rows, y), m[c]));
  }
}

// Groups [g_begin, g_end) of tokens [t0, t0 + kC): the scaled integer products
// (the min terms come after, from add_mins). A chunk after the first
// continues the sums stored in y by the previous one (same order, same bits).
template <bool kNib, int kG, bool kMin, int kC>
void tile(const PanelFormat& f, const PanelGemmArgs& a, int64_t t0, int64_t g_begin, int64_t g_end) {
  constexpr int kQuantBytes = (kNib ? kG / 2 : kG) * kPanelRows;
  constexpr int kVecs = kQuantBytes / 64;
  constexpr bool kSplit = kC < 4;  // two chains per token to hide vpdpbusd latency
  const int gpb = f.act_groups_per_block;
  const size_t group_bytes = f.group_bytes;

  const uint8_t* act[kC];
  const ActGroup* ag[kC];
  for (int c = 0; c < kC; ++c) {
    act[c] = a.act + static_cast<size_t>(t0 + c) * a.act_stride + f.act_qs_offset;
    ag[c] = a.groups + static_cast<size_t>(t0 + c) * a.groups_stride;
  }
  const __mmask16 rows = static_cast<__mmask16>((1u << a.n_rows) - 1);
  __m512 facc[kC];
  for (int c = 0; c < kC; ++c)
    facc[c] = g_begin == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows, a.y + (t0 + c) * a.ldy);
  const __m512i low4 = _mm512_set1_epi8(0x0F);

  const bool stream = a.n_tokens <= kMaxTokens;
  const uint8_t* pg = a.panel + static_cast<size_t>(g_begin) * group_bytes;
  for (int64_t g = g_begin; g < g_end; ++g, pg += group_bytes) {
    if (stream)
      for (size_t o = 0; o < group_bytes; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(pg + kPrefetchBytes + o), _MM_HINT_T0);
        if constexpr (kNib) _mm_prefetch(reinterpret_cast<const char*>(pg + kPrefetchL2Bytes + o), _MM_HINT_T1);
      }
    const size_t aoff = static_cast<size_t>(g / gpb) * static_cast<size_t>(f.act_block_bytes) +
                        static_cast<size_t>(g % gpb) * kG;
    __m512i acc[kC], acc2[kC];
    for (int c = 0; c < kC; ++c) {
      acc[c] = _mm512_set1_epi32(ag[c][g].offset_sum);
      if constexpr (kSplit) acc2[c] = _mm512_setzero_si512();
    }
    for (int j = 0; j < kVecs; ++j) {
      const __m512i raw = _mm512_loadu_si512(pg + 64 * j);
      if constexpr (kNib) {
        const __m512i lo = _mm512_and_si512(raw, low4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
        for (int c = 0; c < kC; ++c) {
          const uint8_t* q = act[c] + aoff + 4 * j;
          acc[c] = _mm512_dpbusd_epi32(acc[c], lo, bcast32(q));
          if constexpr (kSplit)
            acc2[c] = _mm512_dpbusd_epi32(acc2[c], hi, bcast32(q + kG / 2));
          else
            acc[c] = _mm512_dpbusd_epi32(acc[c], hi, bcast32(q + kG / 2));
        }
      } else {
        for (int c = 0; c < kC; ++c) {
          const __m512i b = bcast32(act[c] + aoff + 4 * j);
          if constexpr (kSplit) {
            if (j % 2) {
              acc2[c] = _mm512_dpbusd_epi32(acc2[c], raw, b);
              continue;
            }
          }
          acc[c] = _mm512_dpbusd_epi32(acc[c], raw, b);
        }
      }
    }
    const __m512 ws = load_scales(f, pg + kQuantBytes);
    for (int c = 0; c < kC; ++c) {
      __m512i s = acc[c];
      if constexpr (kSplit) s = _mm512_add_epi32(s, acc2[c]);
      const __m512 scale = _mm512_mul_ps(ws, _mm512_set1_ps(ag[c][g].scale));
      facc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, facc[c]);
    }
  }
  for (int c = 0; c < kC; ++c) _mm512_mask_storeu_ps(a.y + (t0 + c) * a.ldy, rows, facc[c]);
}

// Columns per pass over the tokens: the panel's chunk (12 KB of Q4_1 for 1024
// columns), 8 tokens' activation chunks (9 KB) and their group data stay in the
// 48 KB L1 while every token tile reuses them. Whole rows at once spilled L1
// from 2048 columns on (Q4_1 fell from 220 to 150 GFLOP/s past 16 tokens).
constexpr int64_t kChunkCols = 1024;

template <bool kNib, int kG, bool kMin>
void run(const PanelFormat& f, const PanelGemmArgs& a, int64_t t_begin) {
  const int64_t n_groups = a.cols / kG;
  const int64_t chunk = kChunkCols / kG;
  static_assert(!kMin || kNib, "only the 4-bit formats have mins");
  for (int64_t g0 = 0; g0 < n_groups; g0 += chunk) {
    const int64_t g1 = std::min(n_groups, g0 + chunk);
    int64_t t = t_begin;
    for (; t + kMaxTokens <= a.n_tokens; t += kMaxTokens) tile<kNib, kG, kMin, kMaxTokens>(f, a, t, g0, g1);
    switch (a.n_tokens - t) {
      case 7: tile<kNib, kG, kMin, 7>(f, a, t, g0, g1); break;
      case 6: tile<kNib, kG, kMin, 6>(f, a, t, g0, g1); break;
      case 5: tile<kNib, kG, kMin, 5>(f, a, t, g0, g1); break;
      case 4: tile<kNib, kG, kMin, 4>(f, a, t, g0, g1); break;
      case 3: tile<kNib, kG, kMin, 3>(f, a, t, g0, g1); break;
      case 2: tile<kNib, kG, kMin, 2>(f, a, t, g0, g1); break;
      case 1: tile<kNib, kG, kMin, 1>(f, a, t, g0, g1); break;
      default: break;
    }
  }
  if constexpr (kMin) panel_add_mins(f, a, t_begin, a.n_tokens);
}

}  // namespace

void panel_add_mins(const PanelFormat& f, const PanelGemmArgs& a, int64_t t_begin, int64_t t_end) {
  int64_t t = t_begin;
  for (; t + kMaxTokens <= t_end; t += kMaxTokens) add_mins<kMaxTokens>(f, a, t);
  switch (t_end - t) {
    case 7: add_mins<7>(f, a, t); break;
    case 6: add_mins<6>(f, a, t); break;
    case 5: add_mins<5>(f, a, t); break;
    case 4: add_mins<4>(f, a, t); break;
    case 3: add_mins<3>(f, a, t); break;
    case 2: add_mins<2>(f, a, t); break;
    case 1: add_mins<1>(f, a, t); break;
    default: break;
  }
}

void panel_gemm_from(const PanelFormat& f, const PanelGemmArgs& a, int64_t t_begin) {
  if (f.nibbles) {
    if (f.has_min)
      run<true, 32, true>(f, a, t_begin);
    else
      run<true, 32, false>(f, a, t_begin);
  } else if (f.group == 16) {
    run<false, 16, false>(f, a, t_begin);
  } else {
    run<false, 32, false>(f, a, t_begin);
  }
}

void panel_gemm(const PanelFormat& f, const PanelGemmArgs& a) { panel_gemm_from(f, a, 0); }

}  // namespace kestrel::kernels::avx512
