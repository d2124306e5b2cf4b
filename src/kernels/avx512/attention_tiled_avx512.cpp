// AVX-512 tiled prompt attention: the arithmetic of the scalar twin
// (kv/attention_tiled_ref.cpp), operation for operation, so both give the same
// bits. Register use: scores for 4 query rows x 64 keys are 16 accumulators
// (each K vector loaded once serves 4 rows), and the V pass keeps 4 rows x 64
// output columns (16 accumulators) while it walks the tile's keys.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/attention_quant.h"
#include "kernels/attention_tiled.h"
#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx512/avx512-inl.h"
#include "kernels/f32_kernels.h"

namespace kestrel::kernels::avx512 {
namespace {

constexpr int kRows = 4;  // query rows processed together

inline __m512 load16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }

inline float fold(__m512 v) {
  const __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));  // {t0+t2, t1+t3}
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

// Scores of R rows against the tile: s[r][0..64).
template <int R>
void scores(const float* const* q, int d, const float* kt, __m512 (&s)[R][4]) {
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) s[r][v] = _mm512_setzero_ps();
  for (int c = 0; c < d; ++c) {
    const __m512 k0 = _mm512_loadu_ps(kt + c * kKvTile), k1 = _mm512_loadu_ps(kt + c * kKvTile + 16);
    const __m512 k2 = _mm512_loadu_ps(kt + c * kKvTile + 32), k3 = _mm512_loadu_ps(kt + c * kKvTile + 48);
    for (int r = 0; r < R; ++r) {
      const __m512 b = _mm512_set1_ps(q[r][c]);
      s[r][0] = _mm512_fmadd_ps(b, k0, s[r][0]);
      s[r][1] = _mm512_fmadd_ps(b, k1, s[r][1]);
      s[r][2] = _mm512_fmadd_ps(b, k2, s[r][2]);
      s[r][3] = _mm512_fmadd_ps(b, k3, s[r][3]);
    }
  }
}

// acc[r] = acc[r] * ms[r] + sum_j p[r][j] * v_j, 64 columns at a time.
template <int R>
void accumulate(float* const* acc, const float* const* p, const float* ms, const float* vt, int nk, int d) {
  for (int c0 = 0; c0 < d; c0 += 64) {
    __m512 a[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) a[r][v] = _mm512_mul_ps(_mm512_loadu_ps(acc[r] + c0 + 16 * v), _mm512_set1_ps(ms[r]));
    for (int j = 0; j < nk; ++j) {
      const float* vr = vt + static_cast<size_t>(j) * d + c0;
      const __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
      const __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
      for (int r = 0; r < R; ++r) {
        const __m512 b = _mm512_set1_ps(p[r][j]);
        a[r][0] = _mm512_fmadd_ps(b, v0, a[r][0]);
        a[r][1] = _mm512_fmadd_ps(b, v1, a[r][1]);
        a[r][2] = _mm512_fmadd_ps(b, v2, a[r][2]);
        a[r][3] = _mm512_fmadd_ps(b, v3, a[r][3]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) _mm512_storeu_ps(acc[r] + c0 + 16 * v, a[r][v]);
  }
}

// One group of R rows that see the tile (vis[r] = visible keys in it, >= 1).
template <int R>
void group(const float* const* q, const int64_t* vis, int nk, int d, float scale, const float* kt, const float* vt,
           float* const* acc, float* m, float* l, float* const* p) {
  __m512 s[R][4];
  scores<R>(q, d, kt, s);
  float ms[R];
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < R; ++r) {
    __m512 tmax = neg_inf;
    for (int v = 0; v < 4; ++v) {
      const int64_t live = std::clamp<int64_t>(vis[r] - 16 * v, 0, 16);
      const __mmask16 keep = static_cast<__mmask16>((1u << live) - 1);
      s[r][v] = _mm512_mask_mul_ps(neg_inf, keep, s[r][v], _mm512_set1_ps(scale));
      tmax = _mm512_max_ps(tmax, s[r][v]);
    }
    const float mnew = std::max(m[r], _mm512_reduce_max_ps(tmax));
    ms[r] = 1.0f;
    if (mnew > m[r]) {
      ms[r] = kernels::exp_approx(m[r] - mnew);
      l[r] *= ms[r];
    }
    m[r] = mnew;
    const __m512 mv = _mm512_set1_ps(mnew);
    __m512 sum = _mm512_setzero_ps();
    for (int v = 0; v < 4; ++v) {
      const __m512 e = kernels::exp_approx16(_mm512_sub_ps(s[r][v], mv));
      _mm512_storeu_ps(p[r] + 16 * v, e);
      sum = v == 0 ? e : _mm512_add_ps(sum, e);
    }
    l[r] += fold(sum);
  }
  accumulate<R>(acc, p, ms, vt, nk, d);
}

// T: the element type of KvBlocks<T>, or KvQuantBlocks itself.
template <class T, class Rows>
void attend_tile(const Rows& kv, int d, const TileRows& rows, float scale, float* scratch) {
  if (d % 64 != 0) {  // every llama-family head size is 64 or 128; the twin covers the rest
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
      avx2::gather_f16_tile(kv, k0, nk, d, kt, vt);  // F16C: 8 channels an instruction
    else
      gather_kv_tile(kv, k0, nk, d, kt, vt);
    // The rows that see this tile, in groups of kRows.
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
        case 4: group<4>(q, vis, nk, d, scale, kt, vt, a, gm, gl, p); break;
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
    for (int c = 0; c < d; c += 16)
      _mm512_storeu_ps(rows.out[r] + c, _mm512_mul_ps(_mm512_loadu_ps(acc + r * d + c), _mm512_set1_ps(inv)));
  }
}

}  // namespace

void attend_tile_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile<uint16_t>(kv, d, rows, scale, scratch);
}
void attend_tile_f32(const KvBlocks<float>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile<float>(kv, d, rows, scale, scratch);
}
void attend_tile_quant(const KvQuantBlocks& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile<KvQuantBlocks>(kv, d, rows, scale, scratch);
}

}  // namespace kestrel::kernels::avx512
