#pragma once
// Attention for prompt batches: a tile of query rows (tokens x heads of one kv
// head group, all of one sequence) against that sequence's cached keys and
// values, in tiles of kKvTile key positions.
//
// Why a second kernel: the per-query kernel (attention_kernels.h) follows
// llama.cpp's one-row flash attention, which pays a scalar exp and a rescale of
// the V accumulator for every key; on a 512-token prompt that was half of
// prompt-processing time. llama.cpp itself switches to a tiled algorithm when a
// batch holds at least 64 query tokens (ggml's flash_attn_ext "tiled" path), and
// this kernel follows that algorithm:
//   for each key tile [k0, k0 + 64):
//     s[j]  = (q . k_j) * scale            (F32 q, keys converted to F32)
//             -inf for positions the row cannot see (j >= its n_visible)
//     m'    = max(m, max_j s[j]);  if m' > m: acc *= e(m - m'), l *= e(m - m')
//     p[j]  = e(s[j] - m');  l += sum_j p[j];  acc += sum_j p[j] * v_j  (F32)
//   out = acc / l
// Tiles a row cannot see at all are skipped (as ggml skips fully masked tiles).
// e() is kernels::exp_approx (kernels/f32_kernels.h), a polynomial exp that the
// scalar twin and the SIMD kernel evaluate with the same operations, so the two
// agree bit for bit.
//
// Summation order (both versions): each score sums q[c] * k_j[c] with one
// fused multiply-add per c in increasing c; each acc[c] sums p[j] * v_j[c] with
// one fused multiply-add per j in increasing j; a tile's sum of p is the four
// 16-key vectors added lane-wise ((v0 + v1) + v2) + v3, then folded 8, 4, 2, 1.
#include <cstddef>
#include <cstdint>

#include "kernels/attention_kernels.h"
#include "platform/cpu.h"

namespace kestrel::kernels {

constexpr int kKvTile = 64;     // key positions per tile (ggml's GGML_FA_TILE_KV)
constexpr int kMaxTileRows = 64;  // query rows per call
// llama.cpp takes its tiled path for batches of at least this many tokens.
constexpr int64_t kMinTiledTokens = 64;

// The query rows of one call. Row r reads q[r] ([d] floats), sees key positions
// [0, n_visible[r]) and writes out[r] ([d] floats).
struct TileRows {
  const float* const* q = nullptr;
  float* const* out = nullptr;
  const int64_t* n_visible = nullptr;
  int n = 0;  // 1..kMaxTileRows
};

// Floats of scratch one call needs (per thread).
size_t tile_scratch_floats(int d);

// That scratch, carved: K^T tile [d][64], V tile [64][d], per-row accumulators
// [64][d], running max m and sum l per row, and 64 x 64 floats of exp values.
struct TileScratch {
  float* kt;
  float* vt;
  float* acc;
  float* m;
  float* l;
  float* p;
};
// Carves `scratch` and starts every row of `rows` (m = -inf, l = 0, acc = 0);
// returns the longest visible length, the keys the call walks.
int64_t start_tile_rows(float* scratch, int d, const TileRows& rows, TileScratch* out);

// Keys [k0, k0 + nk) of the blocks as F32, transposed (kt[c * 64 + j]), and
// their values (vt[j * d + c]); slots past nk are zero. Shared by both kernels:
// it is ~1/64 of a tile's arithmetic.
void gather_kv_tile(const KvBlocks<uint16_t>& kv, int64_t k0, int nk, int d, float* kt, float* vt);
void gather_kv_tile(const KvBlocks<float>& kv, int64_t k0, int nk, int d, float* kt, float* vt);

// What every gather shares, whatever the cache's element types: slot j < nk
// holds position k0 + j, which read(pos, key, value) writes as F32 ([d] each;
// the key is then transposed into kt); slots past nk are zero. d <= 512.
template <class ReadRow>
void gather_tile_rows(int64_t k0, int nk, int d, float* kt, float* vt, ReadRow&& read) {
  float key[512];
  for (int j = 0; j < kKvTile; ++j) {
    float* value = vt + static_cast<size_t>(j) * d;
    if (j >= nk) {
      for (int c = 0; c < d; ++c) kt[c * kKvTile + j] = 0.0f;
      for (int c = 0; c < d; ++c) value[c] = 0.0f;
      continue;
    }
    read(k0 + j, key, value);
    for (int c = 0; c < d; ++c) kt[c * kKvTile + j] = key[c];
  }
}

using AttendTileF16Fn = void (*)(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale,
                                 float* scratch);
using AttendTileF32Fn = void (*)(const KvBlocks<float>& kv, int d, const TileRows& rows, float scale,
                                 float* scratch);

// The kernels are chosen, with the KV type and the algorithm, through
// kernels/attention_set.h. The AVX-512 version needs d a multiple of 64 (every
// llama-family head size is 64 or 128) and runs its scalar twin otherwise.

namespace ref {
void attend_tile_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch);
void attend_tile_f32(const KvBlocks<float>& kv, int d, const TileRows& rows, float scale, float* scratch);
}  // namespace ref

namespace avx512 {
void attend_tile_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch);
void attend_tile_f32(const KvBlocks<float>& kv, int d, const TileRows& rows, float scale, float* scratch);
}  // namespace avx512

}  // namespace kestrel::kernels
