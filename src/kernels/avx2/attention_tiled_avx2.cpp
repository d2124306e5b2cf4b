// AVX2 tiled prompt attention: the arithmetic of the scalar twin
// (kernels/ref/attention_tiled_ref.cpp), operation for operation, so both give
// the same bits. Register budget (16 ymm): scores are kRows = 3 query rows x 32
// keys = 12 accumulators (the K vectors come in as memory operands of the FMAs,
// each broadcast q[r][c] takes one register), a tile is two such halves; the V
// pass keeps 3 rows x 32 output columns (12 accumulators) while it walks the
// tile's keys.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx2/avx2-inl.h"
#include "kernels/f32_kernels.h"

namespace kestrel::kernels::avx2 {
namespace {

constexpr int kRows = 3;  // query rows processed together

// Scores of R rows against keys [h, h + 32) of the tile: s[r][0..4) x 8 lanes.
template <int R>
void scores_half(const float* const* q, int d, const float* kt, int h, __m256 (&s)[R][4]) {
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) s[r][v] = _mm256_setzero_ps();
  for (int c = 0; c < d; ++c) {
    const float* k = kt + c * kKvTile + h;
    for (int r = 0; r < R; ++r) {
      const __m256 b = _mm256_broadcast_ss(q[r] + c);
      s[r][0] = _mm256_fmadd_ps(b, _mm256_loadu_ps(k), s[r][0]);
      s[r][1] = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 8), s[r][1]);
      s[r][2] = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 16), s[r][2]);
      s[r][3] = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 24), s[r][3]);
    }
  }
}

// acc[r] = acc[r] * ms[r] + sum_j p[r][j] * v_j, 32 columns at a time.
template <int R>
void accumulate(float* const* acc, const float* const* p, const float* ms, const float* vt, int nk, int d) {
  for (int c0 = 0; c0 < d; c0 += 32) {
    __m256 a[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) a[r][v] = _mm256_mul_ps(_mm256_loadu_ps(acc[r] + c0 + 8 * v), _mm256_set1_ps(ms[r]));
    for (int j = 0; j < nk; ++j) {
      const float* vr = vt + static_cast<size_t>(j) * d + c0;
      for (int r = 0; r < R; ++r) {
        const __m256 b = _mm256_broadcast_ss(p[r] + j);
        a[r][0] = _mm256_fmadd_ps(b, _mm256_loadu_ps(vr), a[r][0]);
        a[r][1] = _mm256_fmadd_ps(b, _mm256_loadu_ps(vr + 8), a[r][1]);
        a[r][2] = _mm256_fmadd_ps(b, _mm256_loadu_ps(vr + 16), a[r][2]);
        a[r][3] = _mm256_fmadd_ps(b, _mm256_loadu_ps(vr + 24), a[r][3]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) _mm256_storeu_ps(acc[r] + c0 + 8 * v, a[r][v]);
  }
}

// The twin's fold64 of one row's 64 exp values, held as 8 vectors of 8: its
// 16-lane vector is ((p0 + p16) + p32) + p48, i.e. lanes 0..7 from vectors
// 0, 2, 4, 6 and lanes 8..15 from 1, 3, 5, 7; then t8 = lo + hi and hsum_ps.
inline float fold64(const __m256 (&e)[8]) {
  const __m256 lo = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(e[0], e[2]), e[4]), e[6]);
  const __m256 hi = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(e[1], e[3]), e[5]), e[7]);
  return hsum_ps(_mm256_add_ps(lo, hi));
}

// One group of R rows that see the tile (vis[r] = visible keys in it, >= 1).
template <int R>
void group(const float* const* q, const int64_t* vis, int nk, int d, float scale, const float* kt, const float* vt,
           float* const* acc, float* m, float* l, float* const* p) {
  __m256 s[R][8];
  for (int h = 0; h < 2; ++h) {
    __m256 sh[R][4];
    scores_half<R>(q, d, kt, 32 * h, sh);
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) s[r][4 * h + v] = sh[r][v];
  }
  float ms[R];
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int r = 0; r < R; ++r) {
    __m256 tmax = neg_inf;
    for (int v = 0; v < 8; ++v) {
      // Lanes at key >= vis[r] are masked to -inf (the twin's j < vis test).
      const int live = static_cast<int>(std::clamp<int64_t>(vis[r] - 8 * v, 0, 8));
      const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(live), lane));
      s[r][v] = _mm256_blendv_ps(neg_inf, _mm256_mul_ps(s[r][v], _mm256_set1_ps(scale)), keep);
      tmax = _mm256_max_ps(tmax, s[r][v]);
    }
    const float mnew = std::max(m[r], hmax_ps(tmax));
    ms[r] = 1.0f;
    if (mnew > m[r]) {
      ms[r] = kernels::exp_approx(m[r] - mnew);
      l[r] *= ms[r];
    }
    m[r] = mnew;
    const __m256 mv = _mm256_set1_ps(mnew);
    __m256 e[8];
    for (int v = 0; v < 8; ++v) {
      e[v] = exp_approx8(_mm256_sub_ps(s[r][v], mv));
      _mm256_storeu_ps(p[r] + 8 * v, e[v]);
    }
    l[r] += fold64(e);
  }
  accumulate<R>(acc, p, ms, vt, nk, d);
}

// T: the element type of KvBlocks<T>, or KvQuantBlocks itself.
template <class T, class Rows>
void attend_tile(const Rows& kv, int d, const TileRows& rows, float scale, float* scratch) {
  if (d % 32 != 0) {  // every llama-family head size is 64 or 128; the twin covers the rest
    if constexpr (std::is_same_v<T, KvQuantBlocks>) ref::attend_tile_quant(kv, d, rows, scale, scratch);
    else if constexpr (std::is_same_v<T, uint16_t>) ref::attend_tile_f16(kv, d, rows, scale, scratch);
    else ref::attend_tile_f32(kv, d, rows, scale, scratch);
    return;
  }
  TileScratch ts;
  const int64_t n_max = start_tile_rows(scratch, d, rows, &ts);
  float *kt = ts.kt, *vt = ts.vt, *acc = ts.acc, *m = ts.m, *l = ts.l, *pbuf = ts.p;
  for (int64_t k0 = 0; k0 < n_max; k0 += kKvTile) {
    const int nk = static_cast<int>(std::min<int64_t>(kKvTile, n_max - k0));
    if constexpr (std::is_same_v<T, uint16_t>)
      gather_f16_tile(kv, k0, nk, d, kt, vt);
    else
      gather_kv_tile(kv, k0, nk, d, kt, vt);
    int live[kMaxTileRows];
    int n_live = 0;
    for (int r = 0; r < rows.n; ++r)
      if (rows.n_visible[r] > k0) live[n_live++] = r;
    for (int g = 0; g < n_live; g += kRows) {
      const int R = std::min(kRows, n_live - g);
      const float* q[kRows];
      float* a[kRows];
      float* p[kRows];
      int64_t vis[kRows];
      float gm[kRows], gl[kRows];
      for (int i = 0; i < R; ++i) {
        const int r = live[g + i];
        q[i] = rows.q[r];
        a[i] = acc + r * d;
        p[i] = pbuf + i * kKvTile;
        vis[i] = rows.n_visible[r] - k0;
        gm[i] = m[r];
        gl[i] = l[r];
      }
      switch (R) {
        case 3: group<3>(q, vis, nk, d, scale, kt, vt, a, gm, gl, p); break;
        case 2: group<2>(q, vis, nk, d, scale, kt, vt, a, gm, gl, p); break;
        default: group<1>(q, vis, nk, d, scale, kt, vt, a, gm, gl, p); break;
      }
      for (int i = 0; i < R; ++i) {
        m[live[g + i]] = gm[i];
        l[live[g + i]] = gl[i];
      }
    }
  }
  for (int r = 0; r < rows.n; ++r) {
    const float inv = l[r] == 0.0f ? 0.0f : 1.0f / l[r];
    for (int c = 0; c < d; c += 8)
      _mm256_storeu_ps(rows.out[r] + c, _mm256_mul_ps(_mm256_loadu_ps(acc + r * d + c), _mm256_set1_ps(inv)));
  }
}

}  // namespace

// The F16 tile as gather_kv_tile builds it (attention_tiled.h), with F16C:
// F16 -> F32 is exact, so the bits are the shared gather's. 8 keys x 8
// channels at a time are converted and transposed in registers; the scalar
// gather converted and stored one element at a time (a quarter of a 4k
// prompt on Zen 3). d is a multiple of 32 here.
void gather_f16_tile(const KvBlocks<uint16_t>& kv, int64_t k0, int nk, int d, float* kt, float* vt) {
  const uint16_t* krow[kKvTile];
  for (int j = 0; j < kKvTile; ++j) {
    float* value = vt + static_cast<size_t>(j) * d;
    if (j >= nk) {
      krow[j] = nullptr;
      std::memset(value, 0, sizeof(float) * static_cast<size_t>(d));
      continue;
    }
    const int64_t pos = k0 + j;
    const int64_t off = kv.ids[pos / kv.block_len] * kv.stride + (pos % kv.block_len) * d;
    krow[j] = kv.k + off;
    for (int c = 0; c < d; c += 8)
      _mm256_storeu_ps(value + c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kv.v + off + c))));
  }
  for (int j0 = 0; j0 < kKvTile; j0 += 8)
    for (int c0 = 0; c0 < d; c0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = krow[j0 + i] ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(krow[j0 + i] + c0)))
                            : _mm256_setzero_ps();
      // 8x8 transpose: r[i] holds key j0 + i's channels c0..c0+7.
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      const __m256 col[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                             _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                             _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                             _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(kt + (c0 + i) * kKvTile + j0, col[i]);
    }
}

void attend_tile_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile<uint16_t>(kv, d, rows, scale, scratch);
}
void attend_tile_f32(const KvBlocks<float>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile<float>(kv, d, rows, scale, scratch);
}
void attend_tile_quant(const KvQuantBlocks& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile<KvQuantBlocks>(kv, d, rows, scale, scratch);
}

}  // namespace kestrel::kernels::avx2
