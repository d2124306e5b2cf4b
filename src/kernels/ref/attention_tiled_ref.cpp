// Scalar twin of the tiled prompt attention (algorithm and summation order in
// kernels/attention_tiled.h), and the dispatch.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "kernels/f32_kernels.h"
#include "kernels/attention_quant.h"
#include "kernels/attention_tiled.h"

namespace kestrel::kernels {

// [K^T tile: d x 64][V tile: 64 x d][acc: 64 rows x d][m: 64][l: 64][p: 64 x 64]
size_t tile_scratch_floats(int d) {
  return static_cast<size_t>(3 * kKvTile * d + 2 * kMaxTileRows + kMaxTileRows * kKvTile);
}

int64_t start_tile_rows(float* scratch, int d, const TileRows& rows, TileScratch* out) {
  out->kt = scratch;
  out->vt = out->kt + kKvTile * d;
  out->acc = out->vt + kKvTile * d;
  out->m = out->acc + kMaxTileRows * d;
  out->l = out->m + kMaxTileRows;
  out->p = out->l + kMaxTileRows;
  int64_t n_max = 0;
  for (int r = 0; r < rows.n; ++r) {
    n_max = std::max(n_max, rows.n_visible[r]);
    out->m[r] = -std::numeric_limits<float>::infinity();
    out->l[r] = 0.0f;
    std::fill(out->acc + r * d, out->acc + (r + 1) * d, 0.0f);
  }
  return n_max;
}

namespace {

inline float to_f32(uint16_t x) { return fp16_to_f32(x); }
inline float to_f32(float x) { return x; }

template <class T>
void gather(const KvBlocks<T>& kv, int64_t k0, int nk, int d, float* kt, float* vt) {
  gather_tile_rows(k0, nk, d, kt, vt, [&](int64_t pos, float* key, float* value) {
    const int64_t off = kv.ids[pos / kv.block_len] * kv.stride + (pos % kv.block_len) * d;
    for (int c = 0; c < d; ++c) {
      key[c] = to_f32(kv.k[off + c]);
      value[c] = to_f32(kv.v[off + c]);
    }
  });
}

}  // namespace

void gather_kv_tile(const KvBlocks<uint16_t>& kv, int64_t k0, int nk, int d, float* kt, float* vt) {
  gather(kv, k0, nk, d, kt, vt);
}
void gather_kv_tile(const KvBlocks<float>& kv, int64_t k0, int nk, int d, float* kt, float* vt) {
  gather(kv, k0, nk, d, kt, vt);
}

namespace ref {
namespace {

float fold64(const float* p) {
  float v[16], t8[8], t4[4];
  for (int l = 0; l < 16; ++l) v[l] = ((p[l] + p[16 + l]) + p[32 + l]) + p[48 + l];
  for (int l = 0; l < 8; ++l) t8[l] = v[l] + v[l + 8];
  for (int l = 0; l < 4; ++l) t4[l] = t8[l] + t8[l + 4];
  const float t2a = t4[0] + t4[2], t2b = t4[1] + t4[3];
  return t2a + t2b;
}

template <class Rows>
void attend_tile(const Rows& kv, int d, const TileRows& rows, float scale, float* scratch) {
  TileScratch ts;
  const int64_t n_max = start_tile_rows(scratch, d, rows, &ts);
  float *kt = ts.kt, *vt = ts.vt, *acc = ts.acc, *m = ts.m, *l = ts.l, *p = ts.p;
  for (int64_t k0 = 0; k0 < n_max; k0 += kKvTile) {
    const int nk = static_cast<int>(std::min<int64_t>(kKvTile, n_max - k0));
    gather_kv_tile(kv, k0, nk, d, kt, vt);
    for (int r = 0; r < rows.n; ++r) {
      const int64_t vis = rows.n_visible[r] - k0;
      if (vis <= 0) continue;  // the whole tile is masked for this row
      const float* q = rows.q[r];
      float* a = acc + r * d;
      float s[kKvTile];
      float tmax = -std::numeric_limits<float>::infinity();
      for (int j = 0; j < kKvTile; ++j) {
        float dot = 0.0f;
        for (int c = 0; c < d; ++c) dot = std::fma(q[c], kt[c * kKvTile + j], dot);
        s[j] = j < vis ? dot * scale : -std::numeric_limits<float>::infinity();
        tmax = std::max(tmax, s[j]);
      }
      const float mnew = std::max(m[r], tmax);
      if (mnew > m[r]) {
        const float ms = kernels::exp_approx(m[r] - mnew);
        for (int c = 0; c < d; ++c) a[c] *= ms;
        l[r] *= ms;
      }
      m[r] = mnew;
      for (int j = 0; j < kKvTile; ++j) p[j] = kernels::exp_approx(s[j] - mnew);
      l[r] += fold64(p);
      for (int j = 0; j < nk; ++j)
        for (int c = 0; c < d; ++c) a[c] = std::fma(p[j], vt[static_cast<size_t>(j) * d + c], a[c]);
    }
  }
  for (int r = 0; r < rows.n; ++r) {
    const float inv = l[r] == 0.0f ? 0.0f : 1.0f / l[r];
    for (int c = 0; c < d; ++c) rows.out[r][c] = acc[r * d + c] * inv;
  }
}

}  // namespace

void attend_tile_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile(kv, d, rows, scale, scratch);
}
void attend_tile_f32(const KvBlocks<float>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile(kv, d, rows, scale, scratch);
}
void attend_tile_quant(const KvQuantBlocks& kv, int d, const TileRows& rows, float scale, float* scratch) {
  attend_tile(kv, d, rows, scale, scratch);
}

}  // namespace ref

}  // namespace kestrel::kernels
