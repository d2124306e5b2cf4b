// AVX-512 VNNI panel GEMM (layout and summation order: kernels/packed_gemm.h).
// A tile is the panel's 16 rows (one int32 lane each) times C tokens. Per group
// and token: one int32 accumulator started at offset * sum(activation), one
// vpdpbusd per 4 elements with the token's 4 activation bytes broadcast to all
// lanes (a memory operand), then one convert and two float ops to scale the
// group. The weight vectors of a group are loaded and unpacked once per tile
// and serve all C tokens.
#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

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
// of 5; 2 KB and 4 KB were no better). Larger batches prefetch in their first
// token tile, the one that brings the chunk in (the later tiles reuse it from
// L1): batched decode of 16 sequences on Qwen2.5-1.5B, which took no prefetch
// above 8 tokens, went from 165 to 239 t/s on Zen 5, and the microbenchmark's
// L3-resident 64-token products rose 11-25 %.
// A second prefetch, into L2 4 KB ahead, raised 4-bit decode again (Q4_0 37.6
// -> 43.1 GFLOP/s, about 12 GB/s: where Q8_0 already was); Q8_0 did not gain
// from it (22.9 -> 21.4-22.0), so the 8-bit formats skip it.
// On AMD Zen 5 both distances doubled (2 KB into L1, 8 KB into L2) raised
// real-file decode by 7-12 % at one thread and 2-10 % at two (Qwen2.5-1.5B
// Q4_K_M 27.6 -> 30.9 t/s at one thread; `kestrel bench -p 0 -n 128`, 3
// alternated rounds); 4 KB / 16 KB was no better. On Sapphire Rapids 2 KB into
// L1 had measured no better than 1 KB, not worse.
constexpr size_t kPrefetchBytes = 2048;
constexpr size_t kPrefetchL2Bytes = 8192;

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

// Quant vector k (elements 4k..4k+3 of each lane's group) of a 5- or 6-bit
// format: its nibbles `low` with the kHigh high bits of the plane `hb` (bits
// kHigh * k of each byte) moved above them. The 16-bit shifts carry bits across
// bytes only into positions the mask clears.
template <int kHigh, int kK>
inline __m512i with_high(__m512i low, __m512i hb) {
  constexpr int kShift = kHigh * kK;
  const __m512i mask = _mm512_set1_epi8(static_cast<char>(((1 << kHigh) - 1) << 4));
  const __m512i moved = kShift <= 4 ? _mm512_slli_epi16(hb, 4 - kShift) : _mm512_srli_epi16(hb, kShift - 4);
  return _mm512_ternarylogic_epi32(low, moved, mask, 0xF8);  // low | (moved & mask)
}

template <int kHigh, int kK>
inline __m512i maybe_high(__m512i low, __m512i hb) {
  if constexpr (kHigh == 0)
    return low;
  else
    return with_high<kHigh, kK>(low, hb);
}

// Group g's min weights, pw pointing at its min bytes: float(dmin) * float(m)
// (exact) for the sub-scale formats, dmin (from dmins, a super-block apart)
// reloaded at each super-block or when `first`; else the group's mins as stored.
inline __m512 group_min_weights(const PanelFormat& f, const uint8_t* pw, const uint8_t* dmins, int64_t g, bool first,
                                __m512& dmin) {
  if (!f.sub_scales) return load_scales(f, pw);
  if (first || g % f.super_groups == 0)
    dmin = _mm512_cvtph_ps(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(dmins + static_cast<size_t>(g / f.super_groups) * panel_super_bytes(f))));
  return _mm512_mul_ps(dmin,
                       _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pw)))));
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
  const uint8_t* dmins = a.panel + panel_super_offset(f, a.cols) + 32;
  __m512 dmin = _mm512_setzero_ps();
  for (int64_t g = 0; g < n_groups; ++g, pw += f.group_bytes) {
    const __m512 wm = group_min_weights(f, pw, dmins, g, g == 0, dmin);
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
// kHigh: bits per quant in the high-bit plane; kSub: int8 scales times the
// group's sum in int32 over the super-block, times its F16 d once at its end
// (PanelFormat::sub_scales), at every batch size.
// kFuse (decode, formats with a min): the min terms join the pass in their own
// accumulator, in add_mins' order (continued across chunks through `mins`, 16
// floats per token) and added to y after the last chunk as add_mins adds them:
// the same bits without a second pass over the panel. A tenth of a Qwen2.5-1.5B
// decode step was that second pass (perf, Zen 5); batches keep it (8-token
// tiles have no registers to spare: fused, Q4_K's ran 3-13 % slower).
template <bool kNib, int kG, bool kMin, int kHigh, bool kSub, bool kLut, int kC, bool kFuse = false>
void tile(const PanelFormat& f, const PanelGemmArgs& a, int64_t t0, int64_t g_begin, int64_t g_end, bool stream,
          float* mins = nullptr) {
  static_assert(!kFuse || kMin);
  constexpr int kNibbleBytes = (kNib ? kG / 2 : kG) * kPanelRows;
  constexpr int kQuantBytes = kNibbleBytes + (kHigh ? 64 : 0);
  constexpr int kVecs = kNibbleBytes / 64;
  constexpr bool kSplit = kC < 4;  // two chains per token to hide vpdpbusd latency
  // Groups per 256-element super-block (sub-scale formats), a constant: a
  // modulo by the runtime field is a division per group.
  constexpr int kSuperGroups = 256 / kG;
  static_assert(!kHigh || (kNib && kG * kHigh == 32), "a high-bit plane is one vector per group");
  assert(!kSub || f.super_groups == kSuperGroups);
  assert(!kMin || f.offset == 0);
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
  // kLut: the 16 unsigned values of the indices in each 128-bit lane (vpshufb).
  const __m512i lut = kLut ? _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlUnsigned)))
                           : _mm512_setzero_si512();
  const uint8_t* super = kSub ? a.panel + panel_super_offset(f, a.cols) : nullptr;
  __m512i isb[kC];  // kSub: int32 sums of the current super-block
  for (int c = 0; c < kC; ++c) isb[c] = _mm512_setzero_si512();
  __m512 m[kFuse ? kC : 1];              // kFuse: the min terms
  __m512 dmin = _mm512_setzero_ps();     // kFuse with sub-scales: the super-block's dmin
  const uint8_t* dmins = a.panel + panel_super_offset(f, a.cols) + 32;
  if constexpr (kFuse)
    for (int c = 0; c < kC; ++c) m[c] = g_begin == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(mins + (t0 + c) * 16);
  const size_t min_offset = panel_quant_bytes(f) + panel_scale_bytes(f);

  const uint8_t* pg = a.panel + static_cast<size_t>(g_begin) * group_bytes;
  // Group g's quants start at aoff in every activation row: block g / gpb,
  // group g % gpb within it (kept by additions: a division per group sat on
  // the path to every activation load).
  int gi = static_cast<int>(g_begin % gpb);
  size_t aoff =
      static_cast<size_t>(g_begin / gpb) * static_cast<size_t>(f.act_block_bytes) + static_cast<size_t>(gi) * kG;
  const size_t next_block = static_cast<size_t>(f.act_block_bytes) - static_cast<size_t>(gpb - 1) * kG;
  for (int64_t g = g_begin; g < g_end; ++g, pg += group_bytes) {
    if (stream)
      for (size_t o = 0; o < group_bytes; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(pg + kPrefetchBytes + o), _MM_HINT_T0);
        if constexpr (kNib) _mm_prefetch(reinterpret_cast<const char*>(pg + kPrefetchL2Bytes + o), _MM_HINT_T1);
      }
    __m512i acc[kC], acc2[kC];
    for (int c = 0; c < kC; ++c) {
      // Formats with a min have no offset (Q4_1, Q5_1, Q4_K, Q5_K, Q2_K): a zeroing
      // idiom, not a broadcast per token and group (Q4_K at 16 tokens +1.7 %,
      // gemm/q4_K/vnni/2048x2048/t16, Zen 4).
      acc[c] = kMin ? _mm512_setzero_si512() : _mm512_set1_epi32(ag[c][g].offset_sum);
      if constexpr (kSplit) acc2[c] = _mm512_setzero_si512();
    }
    __m512i hb = _mm512_setzero_si512();
    if constexpr (kHigh) hb = _mm512_loadu_si512(pg + kNibbleBytes);
    [&]<int... kJ>(std::integer_sequence<int, kJ...>) {
      ([&] {
        constexpr int j = kJ;
        const __m512i raw = _mm512_loadu_si512(pg + 64 * j);
        if constexpr (kNib) {
          __m512i lo = maybe_high<kHigh, j>(_mm512_and_si512(raw, low4), hb);
          __m512i hi = maybe_high<kHigh, j + kVecs>(_mm512_and_si512(_mm512_srli_epi16(raw, 4), low4), hb);
          if constexpr (kLut) {
            lo = _mm512_shuffle_epi8(lut, lo);
            hi = _mm512_shuffle_epi8(lut, hi);
          }
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
      }(), ...);
    }(std::make_integer_sequence<int, kVecs>{});
    if constexpr (kSub) {
      // The int8 scale times the group's sum, accumulated exactly over the
      // super-block; one float epilogue per super-block (d * ascale), where the
      // per-group one cost 6 vector ops of the ~24 a decode group takes.
      const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pg + kQuantBytes)));
      for (int c = 0; c < kC; ++c) {
        __m512i s = acc[c];
        if constexpr (kSplit) s = _mm512_add_epi32(s, acc2[c]);
        isb[c] = _mm512_add_epi32(isb[c], _mm512_mullo_epi32(s, sc));
      }
      if ((g + 1) % kSuperGroups == 0) {
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(super + static_cast<size_t>(g / kSuperGroups) * panel_super_bytes(f))));
        for (int c = 0; c < kC; ++c) {
          const __m512 scale = _mm512_mul_ps(d, _mm512_set1_ps(ag[c][g].scale));
          facc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isb[c]), scale, facc[c]);
          isb[c] = _mm512_setzero_si512();
        }
      }
    } else {
      const __m512 ws = load_scales(f, pg + kQuantBytes);
      for (int c = 0; c < kC; ++c) {
        __m512i s = acc[c];
        if constexpr (kSplit) s = _mm512_add_epi32(s, acc2[c]);
        const __m512 scale = _mm512_mul_ps(ws, _mm512_set1_ps(ag[c][g].scale));
        facc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, facc[c]);
      }
    }
    if constexpr (kFuse) {  // add_mins' operations, group by group
      const __m512 wm = group_min_weights(f, pg + min_offset, dmins, g, g == g_begin, dmin);
      for (int c = 0; c < kC; ++c) m[c] = _mm512_fmadd_ps(wm, _mm512_set1_ps(ag[c][g].min), m[c]);
    }
    if (++gi == gpb) {
      gi = 0;
      aoff += next_block;
    } else {
      aoff += kG;
    }
  }
  const bool last_chunk = g_end == a.cols / kG;
  for (int c = 0; c < kC; ++c) {
    if constexpr (kFuse) {
      if (last_chunk) {
        _mm512_mask_storeu_ps(a.y + (t0 + c) * a.ldy, rows, _mm512_add_ps(facc[c], m[c]));
        continue;
      }
      _mm512_storeu_ps(mins + (t0 + c) * 16, m[c]);
    }
    _mm512_mask_storeu_ps(a.y + (t0 + c) * a.ldy, rows, facc[c]);
  }
}

// Columns per pass over the tokens: the panel's chunk (12 KB of Q4_1 for 1024
// columns), 8 tokens' activation chunks (9 KB) and their group data stay in the
// 48 KB L1 while every token tile reuses them. Whole rows at once spilled L1
// from 2048 columns on (Q4_1 fell from 220 to 150 GFLOP/s past 16 tokens).
constexpr int64_t kChunkCols = 1024;
// Chunks end at super-block ends (256 columns), where sub-scale formats fold
// their integer sums into the float accumulators.
static_assert(kChunkCols % 256 == 0);

template <bool kNib, int kG, bool kMin, int kHigh, bool kSub, bool kLut = false>
void run(const PanelFormat& f, const PanelGemmArgs& a, int64_t t_begin) {
  const int64_t n_groups = a.cols / kG;
  const int64_t chunk = kChunkCols / kG;
  static_assert(!kMin || kNib, "only the 4-bit formats have mins");
  if constexpr (kMin) {
    if (a.n_tokens == 1 && t_begin == 0) {  // decode: the min terms join the pass
      alignas(64) float mins[16];
      for (int64_t g0 = 0; g0 < n_groups; g0 += chunk)
        tile<kNib, kG, kMin, kHigh, kSub, kLut, 1, true>(f, a, 0, g0, std::min(n_groups, g0 + chunk), true, mins);
      return;
    }
  }
  for (int64_t g0 = 0; g0 < n_groups; g0 += chunk) {
    const int64_t g1 = std::min(n_groups, g0 + chunk);
    int64_t t = t_begin;
    for (; t + kMaxTokens <= a.n_tokens; t += kMaxTokens)
      tile<kNib, kG, kMin, kHigh, kSub, kLut, kMaxTokens>(f, a, t, g0, g1, t == t_begin);
    switch (a.n_tokens - t) {
      case 7: tile<kNib, kG, kMin, kHigh, kSub, kLut, 7>(f, a, t, g0, g1, t == t_begin); break;
      case 6: tile<kNib, kG, kMin, kHigh, kSub, kLut, 6>(f, a, t, g0, g1, t == t_begin); break;
      case 5: tile<kNib, kG, kMin, kHigh, kSub, kLut, 5>(f, a, t, g0, g1, t == t_begin); break;
      case 4: tile<kNib, kG, kMin, kHigh, kSub, kLut, 4>(f, a, t, g0, g1, t == t_begin); break;
      case 3: tile<kNib, kG, kMin, kHigh, kSub, kLut, 3>(f, a, t, g0, g1, t == t_begin); break;
      case 2: tile<kNib, kG, kMin, kHigh, kSub, kLut, 2>(f, a, t, g0, g1, t == t_begin); break;
      case 1: tile<kNib, kG, kMin, kHigh, kSub, kLut, 1>(f, a, t, g0, g1, t == t_begin); break;
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
  if (f.nonlinear) {  // IQ4_NL (F16 scales), IQ4_XS (int8 sub-scales)
    if (f.sub_scales)
      run<true, 32, false, 0, true, true>(f, a, t_begin);
    else
      run<true, 32, false, 0, false, true>(f, a, t_begin);
  } else if (f.sub_scales && f.group == 32) {  // Q4_K, Q5_K (4 + 1 bits): GGUF scales and mins
    if (f.high_bits)
      run<true, 32, true, 1, true>(f, a, t_begin);
    else
      run<true, 32, true, 0, true>(f, a, t_begin);
  } else if (f.sub_scales) {  // 16-element groups with GGUF scales
    if (f.high_bits)          // Q6_K: 4 + 2 bits
      run<true, 16, false, 2, true>(f, a, t_begin);
    else if (f.has_min)  // Q2_K
      run<true, 16, true, 0, true>(f, a, t_begin);
    else  // Q3_K
      run<true, 16, false, 0, true>(f, a, t_begin);
  } else if (f.high_bits) {  // Q5_0, Q5_1: 4 + 1 bits
    if (f.has_min)
      run<true, 32, true, 1, false>(f, a, t_begin);
    else
      run<true, 32, false, 1, false>(f, a, t_begin);
  } else if (f.nibbles) {
    if (f.has_min)
      run<true, 32, true, 0, false>(f, a, t_begin);
    else
      run<true, 32, false, 0, false>(f, a, t_begin);
  } else {
    run<false, 32, false, 0, false>(f, a, t_begin);
  }
}

void panel_gemm(const PanelFormat& f, const PanelGemmArgs& a) { panel_gemm_from(f, a, 0); }

}  // namespace kestrel::kernels::avx512
