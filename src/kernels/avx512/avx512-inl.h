#pragma once
// AVX-512 helpers, included only by translation units under kernels/avx512/
// (anonymous namespace: see kernels/avx2/avx2-inl.h for why).
#include <immintrin.h>

// GCC 12 reports its own _mm512_undefined_* placeholders inside the intrinsic
// headers as uninitialized once they are inlined here; the warnings are false.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>

#include "kernels/f32_kernels.h"

namespace kestrel::kernels {
namespace {

inline float half_to_float_512(uint16_t h) { return _cvtsh_ss(h); }

// exp_approx (kernels/f32_kernels.h) on 16 lanes: the same operations, so the
// same bits as the scalar form.
inline __m512 exp_approx16(__m512 x) {
  using E = ExpApprox;
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(E::kMin), _CMP_GE_OQ);
  x = _mm512_min_ps(x, _mm512_set1_ps(E::kMax));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(E::kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(E::kLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(E::kLn2Lo), r);
  __m512 p = _mm512_set1_ps(E::kPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(E::kPoly[i]));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  // Dead lanes may hold any n: their 2^n is never used.
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mul_ps(live, y, _mm512_castsi512_ps(e));
}

inline float hsum512(__m512 v) {
  __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  return _mm_cvtss_f32(t);
}

// ---- gathering the fp16 fields of consecutive blocks ----
// Blocks are 18..210 bytes apart and their fp16 scales sit at fixed offsets, so
// the scales of 8 blocks are picked out of two or four 64-byte loads with one
// vpermt2w per 128 bytes, instead of 8 scalar loads and conversions. A plan
// says, for each output lane, which byte offset (relative to the first block)
// holds its 16-bit field; lanes are split into groups spanning at most 128 bytes.

constexpr int kMaxGroups = 4;

struct GatherPlan {
  int n_groups = 0;
  int group_base[kMaxGroups] = {};       // byte offset of the group's first load
  uint32_t group_lanes[kMaxGroups] = {};  // output lanes filled by the group
  uint64_t load_mask[kMaxGroups][2] = {};  // bytes the two loads may touch
  int16_t index[kMaxGroups][32] = {};     // vpermt2w word indices
};

// Lane l (0..n_lanes-1) reads the 16-bit field at byte
// (l / fields) * stride + field_offset[l % fields]; region_bytes bounds all loads.
constexpr GatherPlan make_gather_plan(int n_lanes, int stride, int fields, const int* field_offset,
                                      int region_bytes) {
  GatherPlan p;
  int lane = 0;
  while (lane < n_lanes) {
    const int g = p.n_groups++;
    const int base = (lane / fields) * stride + field_offset[lane % fields];
    p.group_base[g] = base;
    for (; lane < n_lanes; ++lane) {
      const int off = (lane / fields) * stride + field_offset[lane % fields];
      if (off + 2 > base + 128) break;
      p.group_lanes[g] |= 1u << lane;
      p.index[g][lane] = static_cast<int16_t>((off - base) / 2);
    }
    for (int half = 0; half < 2; ++half) {
      uint64_t m = 0;
      for (int b = 0; b < 64; ++b)
        if (base + 64 * half + b < region_bytes) m |= uint64_t{1} << b;
      p.load_mask[g][half] = m;
    }
  }
  return p;
}

template <const GatherPlan& kPlan>
inline __m512i gather_u16(const uint8_t* base) {
  __m512i r = _mm512_setzero_si512();
  for (int g = 0; g < kPlan.n_groups; ++g) {
    const uint8_t* p = base + kPlan.group_base[g];
    const __m512i lo = kPlan.load_mask[g][0] == ~uint64_t{0}
                           ? _mm512_loadu_si512(p)
                           : _mm512_maskz_loadu_epi8(kPlan.load_mask[g][0], p);
    const __m512i hi = kPlan.load_mask[g][1] == ~uint64_t{0}
                           ? _mm512_loadu_si512(p + 64)
                           : _mm512_maskz_loadu_epi8(kPlan.load_mask[g][1], p + 64);
    const __m512i idx = _mm512_loadu_si512(kPlan.index[g]);
    const __m512i t = _mm512_permutex2var_epi16(lo, idx, hi);
    r = g == 0 ? t : _mm512_mask_mov_epi16(r, kPlan.group_lanes[g], t);
  }
  return r;
}

// Per-lane scale vector for a zmm holding blocks 2k (lanes 0..7) and 2k+1 (8..15),
// taken from a vector of per-block scales.
inline __m512 pair_scale(__m512 per_block, int k) {
  const __m512i idx = _mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                       2 * k + 1, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k);
  return _mm512_permutexvar_ps(idx, per_block);
}

}  // namespace
}  // namespace kestrel::kernels
