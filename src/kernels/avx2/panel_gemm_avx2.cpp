// AVX2 panel GEMM (layout and summation order: kernels/packed_gemm.h), for CPUs
// without VNNI. A 16-row panel is two 256-bit halves: rows 0..7 are bytes
// 0..31 of each 64-byte quant vector, rows 8..15 bytes 32..63; lane r of a
// half holds 4 consecutive quants of its row, and the token's 4 activation
// bytes are broadcast to all lanes, as for vpdpbusd. Without vpdpbusd the u8 x s8
// products go through vpmaddubsw (two products per int16) and vpmaddwd
// (int16 pairs to int32):
//  - 4-, 5- and 6-bit quants (0..15, 0..31, 0..63) against activations in
//    -127..127 (kestrel's Q8 quantizers scale by 127 / amax): a pair is at most
//    2 * 63 * 127 = 16002, so maddubs never saturates, and several of its results
//    can be summed in int16 before one madd widens them (kPerWiden);
//  - the 8-bit quants (Q8_0 stored as q + 128) and the non-linear IQ4 values
//    (0..241) do not fit that: they are used signed (q, kIq4nlValues: the
//    format's offset -128 folded in, which is exactly offset * asum + sum(q * a)),
//    through the sign trick maddubs(|w|, a * sign(w)): |w| <= 128 and
//    |a| <= 127 keep a pair within 2 * 128 * 127 = 32512.
// The integer sums are exact either way, and the float steps are the scalar
// twin's, in its order (fma per group or per super-block), so the results are
// bit-identical to ref::panel_gemm.
#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/panel_types.h"

namespace kestrel::kernels::avx2 {
namespace {

// Makes `v` opaque to the optimiser, which otherwise reassociates a chain of
// integer additions into a tree: every product of a group then lives at once,
// and GCC spilled them to the stack (a third of the kernel's time). The sums
// are exact either way; this keeps the chain a chain.
inline void opaque(__m256i& v) { asm("" : "+x"(v)); }

// fn(std::integral_constant<int, i>) for i in [0, N): loop indices known at
// compile time, so arrays of registers indexed by them stay in registers.
template <int N, typename Fn>
[[gnu::always_inline]] inline void unroll(Fn&& fn) {
  [&]<int... kI>(std::integer_sequence<int, kI...>) __attribute__((always_inline)) {
    (fn(std::integral_constant<int, kI>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

// Rows per 256-bit half of a panel.
constexpr int kHalfRows = 8;

// Tokens per tile. A unit is one half (8 rows) times one token; it keeps in
// registers a float accumulator (or, for int8 sub-scale formats, an int32
// super-block sum) and an int16 sum of products. The batch tiles per format
// (BatchTile below) hold 6 units; the rest of the 16 ymm go to the unpacked
// weight vectors, the broadcast activation and the constants. Tiles of 4
// tokens one half at a time take what the batch tile leaves, and smaller
// tiles (1 or 2 tokens, the tail and decode) run both halves at once, which
// gives 2 or 4 independent chains per group and shares each activation
// broadcast.
constexpr int kMaxTokens = 4;
// Tail tiles of up to this many tokens run both halves at once.
constexpr int kBothHalvesTokens = 2;
// The first token tile over a chunk reads each panel byte from DRAM once: ask
// for the group 2 KB ahead (Qwen2.5-1.5B Q4_K_M decode on Zen 3, 2 threads,
// three interleaved rounds: 1 KB 26.7, 2 KB 27.5, 4 KB 26.3 tokens/s). Batches
// of more than 4 tokens used to skip it.
constexpr size_t kPrefetchBytes = 2048;

inline __m256i bcast32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m128i load64(const uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }

// 8 F16 values as floats.
inline __m256 load_halfs(const uint8_t* p) { return _mm256_cvtph_ps(load128(p)); }

// A half's 8 scales (or mins), F16 or float (PanelFormat::half_scales); `p`
// is the start of the panel's 16-lane vector.
inline __m256 load_scales(const PanelFormat& f, const uint8_t* p, int half) {
  return f.half_scales ? load_halfs(p + 16 * half) : _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8 * half);
}

// 8 int8 sub-scales as int32 lanes.
inline __m256i load_sc32(const uint8_t* p) { return _mm256_cvtepi8_epi32(load64(p)); }

// The int32 lanes of `sc32` (int8 values) as int16 pairs (sc, sc): madd with a
// vector of int16 product sums gives sc * (pair sum), the sub-scale applied in
// the widening step instead of with a 32-bit multiply.
inline __m256i sc_pairs(__m256i sc32) {
  const __m256i dup = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,  //
                                       0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
  return _mm256_shuffle_epi8(sc32, dup);
}

// Rows of half `half` that exist (0..8) when the panel has n_rows.
inline int half_rows(int n_rows, int half) { return std::clamp(n_rows - kHalfRows * half, 0, kHalfRows); }

inline __m256i row_mask(int rows) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// y[0..rows) of one half: whole vectors when all 8 rows exist.
inline __m256 load_y(const float* y, int rows) {
  return rows == kHalfRows ? _mm256_loadu_ps(y) : _mm256_maskload_ps(y, row_mask(rows));
}
inline void store_y(float* y, int rows, __m256 v) {
  if (rows == kHalfRows)
    _mm256_storeu_ps(y, v);
  else
    _mm256_maskstore_ps(y, row_mask(rows), v);
}

// Quant vector k (elements 4k..4k+3 of each lane's group) of a 5- or 6-bit
// format: its nibbles `low` with the kHigh high bits of the plane `hb` (bits
// kHigh * k of each byte) moved above them. The 16-bit shifts carry bits across
// bytes only into positions the mask clears.
template <int kHigh, int kK>
inline __m256i with_high(__m256i low, __m256i hb) {
  if constexpr (kHigh == 0) {
    return low;
  } else {
    constexpr int kShift = kHigh * kK;
    const __m256i mask = _mm256_set1_epi8(static_cast<char>(((1 << kHigh) - 1) << 4));
    const __m256i moved = kShift <= 4 ? _mm256_slli_epi16(hb, 4 - kShift) : _mm256_srli_epi16(hb, kShift - 4);
    return _mm256_or_si256(low, _mm256_and_si256(moved, mask));
  }
}

// A half's weight min vector of one group, `pm` the start of the group's min
// vector: float(dmin) * float(m) (exact) for the sub-scale formats, whose
// super-block dmin the caller keeps, else the format's min vector.
inline __m256 group_mins(const PanelFormat& f, const uint8_t* pm, __m256 dmin, int half) {
  return f.sub_scales ? _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(load_sc32(pm + kHalfRows * half)))
                      : load_scales(f, pm, half);
}

// The min terms of tokens [t0, t0 + kC), rows of halves [0, kH), summed on
// their own over all groups and then added to y (which holds the scaled
// products). Both halves in one pass: each token's min, broadcast once, meets
// 16 rows, and the tokens' ActGroups are read once per panel (a pass per half
// read them twice, from L2 or L3 for long prompts).
template <int kH, int kC>
void add_mins(const PanelFormat& f, const PanelGemmArgs& a, int64_t t0) {
  const int64_t n_groups = a.cols / f.group;
  const size_t min_offset = panel_quant_bytes(f) + panel_scale_bytes(f);
  const ActGroup* ag[kC];
  __m256 m[kH][kC];
  unroll<kC>([&](auto c) __attribute__((always_inline)) {
    ag[c] = a.groups + static_cast<size_t>(t0 + c) * a.groups_stride;
    unroll<kH>([&](auto h) __attribute__((always_inline)) { m[h][c] = _mm256_setzero_ps(); });
  });
  const uint8_t* pw = a.panel + min_offset;
  // sub_scales: the dmin vectors, one super-block before the first (advanced
  // at each super-block's first group).
  const uint8_t* super = a.panel + panel_super_offset(f, a.cols) + 32 - panel_super_bytes(f);
  __m256 dmin[kH];
  unroll<kH>([&](auto h) __attribute__((always_inline)) { dmin[h] = _mm256_setzero_ps(); });
  // Groups left in the current super-block: a runtime modulo per group was a
  // 64-bit division (as long as the products of 6 tokens).
  int left_in_super = 0;
  for (int64_t g = 0; g < n_groups; ++g, pw += f.group_bytes) {
    __m256 wm[kH];
    const bool new_super = f.sub_scales && left_in_super-- == 0;
    if (new_super) {
      left_in_super = f.super_groups - 1;
      super += panel_super_bytes(f);
    }
    unroll<kH>([&](auto h) __attribute__((always_inline)) {
      if (new_super) dmin[h] = load_halfs(super + 16 * h);
      wm[h] = group_mins(f, pw, dmin[h], h);
    });
    unroll<kC>([&](auto c) __attribute__((always_inline)) {
      const __m256 amin = _mm256_set1_ps(ag[c][g].min);
      unroll<kH>([&](auto h) __attribute__((always_inline)) { m[h][c] = _mm256_fmadd_ps(wm[h], amin, m[h][c]); });
    });
  }
  unroll<kH>([&](auto h) __attribute__((always_inline)) {
    const int rows = half_rows(a.n_rows, h);
    unroll<kC>([&](auto c) __attribute__((always_inline)) {
      float* y = a.y + (t0 + c) * a.ldy + kHalfRows * h;
      store_y(y, rows, _mm256_add_ps(load_y(y, rows), m[h][c]));
    });
  });
}

// add_mins over tokens [0, n_tokens): kC-token passes, then one pass for the rest.
template <int kH, int kC>
void add_all_mins(const PanelFormat& f, const PanelGemmArgs& a) {
  int64_t t = 0;
  for (; t + kC <= a.n_tokens; t += kC) add_mins<kH, kC>(f, a, t);
  [&]<int... kN>(std::integer_sequence<int, kN...>) {
    ((a.n_tokens - t == kN + 1 ? add_mins<kH, kN + 1>(f, a, t) : void()), ...);
  }
  (std::make_integer_sequence<int, kC - 1>{});
}

// How a format's quants meet maddubs.
//  kNib: nibble plane (else 8-bit quants); kG: elements per group;
//  kHigh: bits per quant in the high-bit plane (0, 1, 2);
//  kSub: int8 sub-scales summed in int32 per super-block (else a float
//    scale per group);
//  kLut: non-linear (IQ4) indices.
template <bool kNib, int kG, int kHigh, bool kSub, bool kLut>
struct Format {
  static constexpr int kNibbleBytes = (kNib ? kG / 2 : kG) * kPanelRows;
  static constexpr int kQuantBytes = kNibbleBytes + (kHigh ? 64 : 0);
  static constexpr int kVecs = kNibbleBytes / 64;  // 64-byte quant vectors per group
  // Signed operands through the sign trick (offset folded into the quants).
  static constexpr bool kSigned = kLut || !kNib;
  // maddubs results summed in int16 before widening: a pair is at most
  // 2 * max_quant * 127, and the sum must stay below 2^15.
  static constexpr int kMaxQuant = (1 << (4 + kHigh)) - 1;
  static constexpr int kPerWiden = kSigned ? 1 : 32767 / (2 * kMaxQuant * 127);
  static constexpr int kProducts = kNib ? 2 * kVecs : kVecs;  // maddubs per group and unit
  static_assert(kPerWiden >= 1);
  static_assert(!kHigh || (kNib && kG * kHigh == 32), "a high-bit plane is one vector per group");
};

// Groups [g_begin, g_end) of tokens [t0, t0 + kC) and halves [h0, h0 + kH):
// the scaled integer products (the min terms come after, from add_mins). A
// chunk after the first continues the sums stored in y by the previous one
// (same order, same bits).
//
// Register budget (16 ymm): per unit an int16 sum of products and either a
// float accumulator (!kSub) or an int32 super-block sum (kSub, whose
// float accumulator lives in y: one read-modify-write per super-block), the
// unpacked weight vectors, the broadcast activation and the nibble mask. The
// format's offset term (kOffset) and each group's int32 sum are formed at the
// group's end, so no third register per unit lives through the products (with
// them GCC spilled the sums to the stack), and the activation offset advances
// by additions (a division per group cost as much as a quarter of the products).
template <bool kNib, int kG, int kHigh, bool kSub, bool kLut, bool kMin, int kH, int kC>
void tile(const PanelFormat& f, const PanelGemmArgs& a, int h0, int64_t t0, int64_t g_begin, int64_t g_end) {
  using F = Format<kNib, kG, kHigh, kSub, kLut>;
  // Groups per 256-element super-block (sub-scale formats), known at compile
  // time: a modulo by the runtime field cost a division per group.
  constexpr int kSuperGroups = 256 / kG;
  assert(!kSub || f.super_groups == kSuperGroups);
  // The unsigned formats without a min are exactly those with an offset.
  constexpr bool kOffset = !F::kSigned && !kMin;
  assert(kOffset == (!F::kSigned && f.offset != 0));
  // One token over all groups (decode): the min terms are summed here, in their
  // own accumulator as add_mins does, instead of in a second pass over the panel.
  constexpr bool kFusedMins = kMin && kC == 1;
  const bool fuse_mins = kFusedMins && a.n_tokens == 1;  // run() passes all groups then
  const int gpb = f.act_groups_per_block;
  const size_t group_bytes = f.group_bytes;

  int rows[kH];
  const uint8_t* act[kC];
  const ActGroup* ag[kC];
  float* y[kH][kC];
  unroll<kH>([&](auto h) __attribute__((always_inline)) { rows[h] = half_rows(a.n_rows, h0 + h); });
  unroll<kC>([&](auto c) __attribute__((always_inline)) {
    act[c] = a.act + static_cast<size_t>(t0 + c) * a.act_stride + f.act_qs_offset;
    ag[c] = a.groups + static_cast<size_t>(t0 + c) * a.groups_stride;
    unroll<kH>([&](auto h) __attribute__((always_inline)) { y[h][c] = a.y + (t0 + c) * a.ldy + kHalfRows * (h0 + h); });
  });
  // !kSub: float accumulators in registers; kSub: in y (zeroed first).
  constexpr bool kAccInY = kSub;
  __m256 facc[kH][kC];
  __m256i isb[kH][kC];  // kSub: int32 sums of the current super-block
  unroll<kH>([&](auto h) __attribute__((always_inline)) {
    unroll<kC>([&](auto c) __attribute__((always_inline)) {
      facc[h][c] = _mm256_setzero_ps();
      isb[h][c] = _mm256_setzero_si256();
      if (g_begin != 0 && !kAccInY)
        facc[h][c] = load_y(y[h][c], rows[h]);
      else if (g_begin == 0 && kAccInY)
        store_y(y[h][c], rows[h], facc[h][c]);
    });
  });
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones16 = _mm256_set1_epi16(1);
  // kLut: the 16 signed values of the indices in each 128-bit lane (vpshufb):
  // kIq4nlUnsigned - 128.
  const __m256i lut = kLut ? _mm256_xor_si256(_mm256_broadcastsi128_si256(load128(kIq4nlUnsigned)),
                                              _mm256_set1_epi8(static_cast<char>(0x80)))
                           : _mm256_setzero_si256();
  const uint8_t* super = kSub ? a.panel + panel_super_offset(f, a.cols) : nullptr;
  __m256 mins[kH], dmin[kH];  // fuse_mins: the min terms; sub-scale formats' dmin
  unroll<kH>([&](auto h) __attribute__((always_inline)) {
    mins[h] = _mm256_setzero_ps();
    dmin[h] = _mm256_setzero_ps();
  });

  // The first token tile brings the chunk in (the later ones reuse it from L1).
  const bool stream = t0 == 0;
  const uint8_t* pg = a.panel + static_cast<size_t>(g_begin) * group_bytes;
  // Group g's quants start at aoff in every activation row: block g / gpb,
  // group g % gpb within it.
  int gi = static_cast<int>(g_begin % gpb);
  size_t aoff =
      static_cast<size_t>(g_begin / gpb) * static_cast<size_t>(f.act_block_bytes) + static_cast<size_t>(gi) * kG;
  const size_t next_block = static_cast<size_t>(f.act_block_bytes) - static_cast<size_t>(gpb - 1) * kG;
  for (int64_t g = g_begin; g < g_end; ++g, pg += group_bytes) {
    if (stream)
      for (size_t o = 0; o < group_bytes; o += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pg + kPrefetchBytes + o), _MM_HINT_T0);
    // The widening multiplier: ones, or the rows' int8 sub-scales as int16 pairs;
    // !kSub: the group's float weight scale, ready before the products so
    // that each unit's float step runs as soon as its last product is widened.
    __m256i widen[kH], sc32[kH], hb[kH];
    __m256 ws[kH];
    unroll<kH>([&](auto h) __attribute__((always_inline)) {
      widen[h] = ones16;
      if constexpr (kSub) {
        sc32[h] = load_sc32(pg + F::kQuantBytes + kHalfRows * (h0 + h));
        widen[h] = sc_pairs(sc32[h]);
      } else {
        ws[h] = load_scales(f, pg + F::kQuantBytes, h0 + h);
      }
      hb[h] = kHigh ? load256(pg + F::kNibbleBytes + 32 * (h0 + h)) : _mm256_setzero_si256();
    });
    // Per unit: the int16 sum of products since the last widening, and (!kSub)
    // the int32 sum of the group.
    __m256i p16[kH][kC], acc[kH][kC];
    // Product number kK of the group (in maddubs order) for unit (h, c). The
    // group's last one ends the unit's group: !kSub adds the offset term
    // and takes the float step here, so no int32 sum outlives its chain (four
    // of them live until after the loop spilled to the stack).
    auto add_product = [&]<int kK>(auto h, auto c, __m256i prod) __attribute__((always_inline)) {
      __m256i sum = prod;
      if constexpr (kK % F::kPerWiden != 0) sum = _mm256_add_epi16(p16[h][c], prod);
      // On a local, not the array element: an asm operand on the element kept
      // the array in memory (a store and a reload before each widening).
      if constexpr (F::kPerWiden >= 4) opaque(sum);
      p16[h][c] = sum;
      if constexpr (kK % F::kPerWiden == F::kPerWiden - 1 || kK == F::kProducts - 1) {
        const __m256i wide = _mm256_madd_epi16(p16[h][c], widen[h]);
        if constexpr (kSub)
          isb[h][c] = _mm256_add_epi32(isb[h][c], wide);
        else if constexpr (kK >= F::kPerWiden)
          acc[h][c] = _mm256_add_epi32(acc[h][c], wide);
        else
          acc[h][c] = wide;
      }
      if constexpr (!kSub && kK == F::kProducts - 1) {
        // The offset term, exact in int32: offset * asum.
        if constexpr (kOffset) acc[h][c] = _mm256_add_epi32(acc[h][c], _mm256_set1_epi32(ag[c][g].offset_sum));
        const __m256 scale = _mm256_mul_ps(ws[h], _mm256_set1_ps(ag[c][g].scale));
        facc[h][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[h][c]), scale, facc[h][c]);
      }
    };
    unroll<F::kVecs>([&](auto jc) __attribute__((always_inline)) {
      constexpr int j = decltype(jc)::value;
      unroll<kH>([&](auto h) __attribute__((always_inline)) {
        const __m256i raw = load256(pg + 64 * j + 32 * (h0 + h));
        if constexpr (kNib) {
          __m256i lo = with_high<kHigh, j>(_mm256_and_si256(raw, low4), hb[h]);
          __m256i hi = with_high<kHigh, j + F::kVecs>(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low4), hb[h]);
          if constexpr (kLut) {
            lo = _mm256_shuffle_epi8(lut, lo);
            hi = _mm256_shuffle_epi8(lut, hi);
            const __m256i alo = _mm256_sign_epi8(lo, lo), ahi = _mm256_sign_epi8(hi, hi);
            unroll<kC>([&](auto c) __attribute__((always_inline)) {
              const uint8_t* q = act[c] + aoff + 4 * j;
              add_product.template operator()<2 * j>(h, c, _mm256_maddubs_epi16(alo, _mm256_sign_epi8(bcast32(q), lo)));
              add_product.template operator()<2 * j + 1>(
                  h, c, _mm256_maddubs_epi16(ahi, _mm256_sign_epi8(bcast32(q + kG / 2), hi)));
            });
          } else {
            unroll<kC>([&](auto c) __attribute__((always_inline)) {
              const uint8_t* q = act[c] + aoff + 4 * j;
              add_product.template operator()<2 * j>(h, c, _mm256_maddubs_epi16(lo, bcast32(q)));
              add_product.template operator()<2 * j + 1>(h, c, _mm256_maddubs_epi16(hi, bcast32(q + kG / 2)));
            });
          }
        } else {  // q + 128 -> q (int8), |q| as the unsigned operand
          const __m256i w = _mm256_xor_si256(raw, _mm256_set1_epi8(static_cast<char>(0x80)));
          const __m256i aw = _mm256_sign_epi8(w, w);
          unroll<kC>([&](auto c) __attribute__((always_inline)) {
            add_product.template operator()<j>(
                h, c, _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast32(act[c] + aoff + 4 * j), w)));
          });
        }
      });
    });

    if constexpr (kFusedMins) {
      if (fuse_mins) {  // add_mins' steps: float(dmin) * float(m), or the min vector
        const uint8_t* pm = pg + F::kQuantBytes + panel_scale_bytes(f);
        unroll<kH>([&](auto h) __attribute__((always_inline)) {
          if constexpr (kSub)
            if (g % kSuperGroups == 0)
              dmin[h] = load_halfs(super + static_cast<size_t>(g / kSuperGroups) * panel_super_bytes(f) + 32 +
                                   16 * (h0 + h));
          mins[h] = _mm256_fmadd_ps(group_mins(f, pm, dmin[h], h0 + h), _mm256_set1_ps(ag[0][g].min), mins[h]);
        });
      }
    }

    // kSub: the offset term, exact in int32 (offset * asum * sc), and one
    // float step per super-block: the int32 sums times d * ascale.
    if constexpr (kSub) {
      if constexpr (kOffset)
        unroll<kH>([&](auto h) __attribute__((always_inline)) {
          unroll<kC>([&](auto c) __attribute__((always_inline)) {
            isb[h][c] =
                _mm256_add_epi32(isb[h][c], _mm256_mullo_epi32(sc32[h], _mm256_set1_epi32(ag[c][g].offset_sum)));
          });
        });
      if ((g + 1) % kSuperGroups == 0) {
        unroll<kH>([&](auto h) __attribute__((always_inline)) {
          const __m256 d = load_halfs(super + static_cast<size_t>(g / kSuperGroups) * panel_super_bytes(f) +
                                      16 * (h0 + h));
          unroll<kC>([&](auto c) __attribute__((always_inline)) {
            const __m256 scale = _mm256_mul_ps(d, _mm256_set1_ps(ag[c][g].scale));
            store_y(y[h][c], rows[h], _mm256_fmadd_ps(_mm256_cvtepi32_ps(isb[h][c]), scale, load_y(y[h][c], rows[h])));
            isb[h][c] = _mm256_setzero_si256();
          });
        });
      }
    }
    if (++gi == gpb) {
      gi = 0;
      aoff += next_block;
    } else {
      aoff += kG;
    }
  }
  if constexpr (kFusedMins) {
    if (fuse_mins) {
      unroll<kH>([&](auto h) __attribute__((always_inline)) {
        const __m256 acc_y = kAccInY ? load_y(y[h][0], rows[h]) : facc[h][0];
        store_y(y[h][0], rows[h], _mm256_add_ps(acc_y, mins[h]));
      });
      return;
    }
  }
  if constexpr (!kAccInY)
    unroll<kH>([&](auto h) __attribute__((always_inline)) {
      unroll<kC>([&](auto c) __attribute__((always_inline)) { store_y(y[h][c], rows[h], facc[h][c]); });
    });
}

// Columns per pass over the tokens: the panel's chunk (10 KB of Q4_1 for 1024
// columns) and 4 tokens' activation chunks (4.5 KB) stay in Zen 3's 32 KB L1
// while the token tiles and both halves reuse them.
constexpr int64_t kChunkCols = 1024;
// Chunks end at super-block ends (256 columns), where sub-scale formats fold
// their integer sums into the float accumulators.
static_assert(kChunkCols % 256 == 0);

// The tile batches run in: halves at once times tokens (6 units). The 4-bit
// formats unpack a weight vector in 3 operations, so sharing each activation
// broadcast between both halves pays most (2 x 3); the formats with a
// high-bit plane or an index lookup unpack dearer and reuse each unpacked
// vector over 6 tokens of one half (1 x 6); Q8_0 needs no unpacking (1 x 4).
// One thread, GFLOP/s at 64 tokens against 1 x 4 (Zen 3, two rounds): Q4_0
// 156 -> 166, Q4_1 147 -> 169, Q4_K 149 -> 162, Q2_K 145 -> 152, Q3_K 148 ->
// 156 (2 x 3); Q5_0 129 -> 140, Q5_1 124 -> 139, Q5_K 140 -> 147, Q6_K 97 ->
// 106, IQ4_NL 96 -> 104, IQ4_XS 107 -> 113 (1 x 6); the other shape was slower
// for each group (Q5_1 2 x 3: 112, Q4_1 1 x 6: 155).
template <bool kNib, int kHigh, bool kLut>
struct BatchTile {
  static constexpr bool kCheapUnpack = kNib && kHigh == 0 && !kLut;
  static constexpr int kHalves = kCheapUnpack ? 2 : 1;
  static constexpr int kTokens = kCheapUnpack ? 3 : kNib ? 6 : kMaxTokens;
};

// Tokens [t, t + n) with 0 < n < kMaxTokens: one tile of n tokens.
template <bool kNib, int kG, int kHigh, bool kSub, bool kLut, bool kMin>
void tail(const PanelFormat& f, const PanelGemmArgs& a, int64_t t, int64_t n, int64_t g0, int64_t g1) {
  static_assert(kMaxTokens == 4 && kBothHalvesTokens == 2);
  switch (n) {
    case 3:
      tile<kNib, kG, kHigh, kSub, kLut, kMin, 1, 3>(f, a, 0, t, g0, g1);
      if (a.n_rows > kHalfRows) tile<kNib, kG, kHigh, kSub, kLut, kMin, 1, 3>(f, a, 1, t, g0, g1);
      break;
    case 2:
      if (a.n_rows > kHalfRows)
        tile<kNib, kG, kHigh, kSub, kLut, kMin, 2, 2>(f, a, 0, t, g0, g1);
      else
        tile<kNib, kG, kHigh, kSub, kLut, kMin, 1, 2>(f, a, 0, t, g0, g1);
      break;
    case 1:
      if (a.n_rows > kHalfRows)
        tile<kNib, kG, kHigh, kSub, kLut, kMin, 2, 1>(f, a, 0, t, g0, g1);
      else
        tile<kNib, kG, kHigh, kSub, kLut, kMin, 1, 1>(f, a, 0, t, g0, g1);
      break;
    default:
      break;
  }
}

template <bool kNib, int kG, bool kMin, int kHigh, bool kSub, bool kLut = false>
void run(const PanelFormat& f, const PanelGemmArgs& a) {
  static_assert(!kMin || kNib, "only the 4-bit formats have mins");
  const int64_t n_groups = a.cols / kG;
  const int64_t chunk = kChunkCols / kG;
  const int halves = a.n_rows > kHalfRows ? 2 : 1;  // a partial panel may have no second half
  // Decode: no token tiles share a column chunk, and the min terms join the pass.
  if (a.n_tokens == 1) {
    tail<kNib, kG, kHigh, kSub, kLut, kMin>(f, a, 0, 1, 0, n_groups);
    return;
  }
  for (int64_t g0 = 0; g0 < n_groups; g0 += chunk) {
    const int64_t g1 = std::min(n_groups, g0 + chunk);
    int64_t t = 0;
    using B = BatchTile<kNib, kHigh, kLut>;
    if (B::kHalves == 1 || halves == 2)
      for (; t + B::kTokens <= a.n_tokens; t += B::kTokens)
        for (int h = 0; h < halves; h += B::kHalves)
          tile<kNib, kG, kHigh, kSub, kLut, kMin, B::kHalves, B::kTokens>(f, a, h, t, g0, g1);
    for (; t + kMaxTokens <= a.n_tokens; t += kMaxTokens)
      for (int h = 0; h < halves; ++h) tile<kNib, kG, kHigh, kSub, kLut, kMin, 1, kMaxTokens>(f, a, h, t, g0, g1);
    tail<kNib, kG, kHigh, kSub, kLut, kMin>(f, a, t, a.n_tokens - t, g0, g1);
  }
  if constexpr (kMin) {
    // Accumulators per pass: kH * kC of the 16 registers, with kH weight vectors.
    if (halves == 2)
      add_all_mins<2, 6>(f, a);
    else
      add_all_mins<1, 8>(f, a);
  }
}

}  // namespace

void panel_gemm(const PanelFormat& f, const PanelGemmArgs& a) {
  if (f.nonlinear) {  // IQ4_NL (F16 scales), IQ4_XS (int8 sub-scales)
    if (f.sub_scales)
      run<true, 32, false, 0, true, true>(f, a);
    else
      run<true, 32, false, 0, false, true>(f, a);
  } else if (f.sub_scales && f.group == 32) {  // Q4_K, Q5_K (4 + 1 bits): GGUF scales and mins
    if (f.high_bits)
      run<true, 32, true, 1, true>(f, a);
    else
      run<true, 32, true, 0, true>(f, a);
  } else if (f.sub_scales) {  // 16-element groups with GGUF scales
    if (f.high_bits)          // Q6_K: 4 + 2 bits
      run<true, 16, false, 2, true>(f, a);
    else if (f.has_min)  // Q2_K
      run<true, 16, true, 0, true>(f, a);
    else  // Q3_K
      run<true, 16, false, 0, true>(f, a);
  } else if (f.high_bits) {  // Q5_0, Q5_1: 4 + 1 bits
    if (f.has_min)
      run<true, 32, true, 1, false>(f, a);
    else
      run<true, 32, false, 1, false>(f, a);
  } else if (f.nibbles) {
    if (f.has_min)
      run<true, 32, true, 0, false>(f, a);
    else
      run<true, 32, false, 0, false>(f, a);
  } else {
    run<false, 32, false, 0, false>(f, a);
  }
}

}  // namespace kestrel::kernels::avx2
