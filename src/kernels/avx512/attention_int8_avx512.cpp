// AVX-512 VNNI prompt tiles of SageAttention and INT-FlashAttention over an F16
// cache: the arithmetic of the scalar twins (kernels/ref/attention_sage_ref.cpp,
// attention_int8_ref.cpp), the same bits, with the integer dot products on
// vpdpbusd. The walk over blocks is the AVX2 tiles' (kernels/int8_tile_walk.h).
//
// A KV block of the cache is 16 keys: one key per 32-bit lane, so a block's
// scores for one query row are one register.
//  - QK^T: the block's INT8 keys transposed once into VNNI's layout,
//    kp[c4][key] = channels 4 c4 .. 4 c4 + 3 of the key; per step of 4
//    channels one vpdpbusd per query row takes (q8 + 128) as the u8 operand,
//    broadcast, against the keys (s8): exact in int32 (no int16 pairs, so no
//    saturation and no sign trick), then minus 128 * sum_c k8 per key, the
//    twin's formula. kTileR rows share each key register.
//  - softmax per row as the twins do it: one rescale per block, the sum of
//    probabilities key by key.
//  - PV: sage's F32 FMAs over the block's values widened once; int8's P (u8,
//    up to 255) against V (s8) on vpdpbusd, V stored as 4 keys' bytes per
//    channel lane: exact in int32.
// Heads of 64 or 128 channels (d % 64 == 0) and blocks of at most 16 keys;
// anything else runs the AVX2 tiles (the same bits).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/attention_int8.h"
#include "kernels/attention_sage.h"
#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx512/avx512-inl.h"
#include "kernels/f32_kernels.h"
#include "kernels/int8_tile_walk.h"

namespace kestrel::kernels::avx512 {
namespace {

constexpr int kKeys = 16;  // keys of a block: the lanes of one register
constexpr int kMaxD = 512;
// Query rows per pass over a block. PV holds kTileR x 4 accumulators of 64
// output channels, plus 4 value registers and a broadcast: 29 of 32.
constexpr int kTileR = 6;

inline __m512 load16h(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// nearbyint under the default rounding: to nearest, ties to even.
inline __m512i round_i32(__m512 x) {
  return _mm512_cvt_roundps_epi32(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline __m512 inv_or_zero(__m512 s) {  // the twins' s > 0 ? 1 / s : 0
  return _mm512_maskz_div_ps(_mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_set1_ps(1.0f), s);
}
inline int32_t load4(const uint8_t* p) {
  int32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

// A query row in INT8, as the u8 operand: q8 + 128.
struct QRow {
  float sq = 0.0f;
  const float* q = nullptr;
  alignas(64) uint8_t qu[kMaxD];
};

void quantize_q(const float* q, int d, QRow* out) {
  __m512 m = _mm512_setzero_ps();
  for (int c = 0; c < d; c += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(q + c)));
  out->q = q;
  out->sq = _mm512_reduce_max_ps(m) / 127.0f;
  const __m512 iq = _mm512_set1_ps(out->sq > 0.0f ? 1.0f / out->sq : 0.0f);
  const __m512i off = _mm512_set1_epi32(128);
  for (int c = 0; c < d; c += 16) {
    const __m512i x = _mm512_add_epi32(round_i32(_mm512_mul_ps(_mm512_loadu_ps(q + c), iq)), off);
    _mm_store_si128(reinterpret_cast<__m128i*>(out->qu + c), _mm512_cvtepi32_epi8(x));
  }
}

struct RowState {
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  float* acc = nullptr;  // [d]
};

// A block's keys in VNNI's layout and 128 * their channel sums (the offset of
// the u8 operand taken back). Keys past the block's rows are zero.
struct PackedKeys {
  alignas(64) int32_t kp[kMaxD / 4 * kKeys];
  alignas(64) int32_t ksum128[kKeys];
};

// k8: [kKeys][d] INT8 keys, rows past the block's zero.
void pack_keys(const int8_t* k8, int d, PackedKeys* pk) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(d / 4));
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i ks = _mm512_setzero_si512();
  for (int c4 = 0; c4 < d / 4; ++c4) {
    const __m512i x = _mm512_i32gather_epi32(idx, reinterpret_cast<const int32_t*>(k8) + c4, 4);
    _mm512_store_si512(pk->kp + c4 * kKeys, x);
    ks = _mm512_dpbusd_epi32(ks, ones, x);
  }
  _mm512_store_si512(pk->ksum128, _mm512_slli_epi32(ks, 7));
}

// R rows' integer dots sum_c q8_c k8_jc, key j in lane j.
template <int R>
inline void block_dots(const QRow* const* q, const PackedKeys& pk, int d, __m512i (&out)[R]) {
  __m512i dot[R];  // in registers (through `out` the compiler keeps them in memory)
  for (int r = 0; r < R; ++r) dot[r] = _mm512_setzero_si512();
  for (int c4 = 0; c4 < d / 4; ++c4) {
    const __m512i k = _mm512_load_si512(pk.kp + c4 * kKeys);
    for (int r = 0; r < R; ++r) dot[r] = _mm512_dpbusd_epi32(dot[r], _mm512_set1_epi32(load4(q[r]->qu + 4 * c4)), k);
  }
  const __m512i ks = _mm512_load_si512(pk.ksum128);
  for (int r = 0; r < R; ++r) out[r] = _mm512_sub_epi32(dot[r], ks);
}

// The running max of each row rises to its block's scores s[r] (lanes in
// `live`): ms[r] = e^(old - new) (all rows in one exp_approx16, exp_approx's
// bits), l *= ms, and s[r] becomes e^(s - new) (0 in dead lanes).
template <int R>
inline void raise_max(RowState* const* st, __m512 (&s)[R], __mmask16 live, float* ms) {
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  alignas(64) float x[16] = {};
  float bmax[R];
  for (int r = 0; r < R; ++r) {
    bmax[r] = std::max(st[r]->m, _mm512_reduce_max_ps(_mm512_mask_mov_ps(neg_inf, live, s[r])));
    x[r] = st[r]->m - bmax[r];
  }
  _mm512_store_ps(x, exp_approx16(_mm512_load_ps(x)));
  for (int r = 0; r < R; ++r) {
    ms[r] = x[r];
    st[r]->l *= ms[r];
    st[r]->m = bmax[r];
    s[r] = _mm512_maskz_mov_ps(live, exp_approx16(_mm512_sub_ps(s[r], _mm512_set1_ps(bmax[r]))));
  }
}

// ---- SageAttention ----

struct SageBlock {
  int rows = 0;
  float sk = 0.0f;
  alignas(64) float mean[kMaxD];
  alignas(64) int8_t k8[kKeys * kMaxD];
  PackedKeys pk;
};

void quantize_sage_block(const uint16_t* k, int rows, int d, SageBlock* b) {
  b->rows = rows;
  const __m512 nr = _mm512_set1_ps(static_cast<float>(rows));
  __m512 kmax = _mm512_setzero_ps();
  for (int c = 0; c < d; c += 16) {
    __m512 s = _mm512_setzero_ps();
    for (int j = 0; j < rows; ++j) s = _mm512_add_ps(s, load16h(k + j * d + c));
    const __m512 mean = _mm512_div_ps(s, nr);
    _mm512_store_ps(b->mean + c, mean);
    for (int j = 0; j < rows; ++j)
      kmax = _mm512_max_ps(kmax, _mm512_abs_ps(_mm512_sub_ps(load16h(k + j * d + c), mean)));
  }
  b->sk = _mm512_reduce_max_ps(kmax) / 127.0f;
  const __m512 ik = _mm512_set1_ps(b->sk > 0.0f ? 1.0f / b->sk : 0.0f);
  for (int j = 0; j < kKeys; ++j)
    for (int c = 0; c < d; c += 16) {
      const __m512i x =
          j < rows ? round_i32(_mm512_mul_ps(_mm512_sub_ps(load16h(k + j * d + c), _mm512_load_ps(b->mean + c)), ik))
                   : _mm512_setzero_si512();
      _mm_store_si128(reinterpret_cast<__m128i*>(b->k8 + j * d + c), _mm512_cvtsepi32_epi8(x));
    }
  pack_keys(b->k8, d, &b->pk);
}

// R rows through one sage block; vf: the block's values as F32 [rows][d].
template <int R>
void sage_rows(const QRow* const* q, const SageBlock& b, const float* vf, int d, float scale, RowState* const* st) {
  float qms[R];  // scale * (q . mean) in the twin's order (8 lanes of FMAs)
  for (int r = 0; r < R; ++r) {
    __m256 a = _mm256_setzero_ps();
    for (int c = 0; c < d; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q[r]->q + c), _mm256_load_ps(b.mean + c), a);
    qms[r] = hsum_ps(a) * scale;  // (l + l+4), then (t0 + t2) + (t1 + t3): the twin's fold
  }
  __m512i dot[R];
  block_dots<R>(q, b.pk, d, dot);
  const __mmask16 live = static_cast<__mmask16>((1u << b.rows) - 1);
  __m512 e[R];
  for (int r = 0; r < R; ++r)
    e[r] = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot[r]), _mm512_set1_ps(q[r]->sq * b.sk * scale)),
                         _mm512_set1_ps(qms[r]));
  float ms[R];
  raise_max<R>(st, e, live, ms);
  alignas(64) float p[R][kKeys];
  for (int r = 0; r < R; ++r) _mm512_store_ps(p[r], e[r]);
  float l[R];  // the twin's sum, key by key (R chains side by side)
  for (int r = 0; r < R; ++r) l[r] = st[r]->l;
  for (int j = 0; j < b.rows; ++j)
    for (int r = 0; r < R; ++r) l[r] += p[r][j];
  for (int r = 0; r < R; ++r) st[r]->l = l[r];
  for (int c0 = 0; c0 < d; c0 += 64) {
    __m512 a[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v)
        a[r][v] = _mm512_mul_ps(_mm512_loadu_ps(st[r]->acc + c0 + 16 * v), _mm512_set1_ps(ms[r]));
    for (int j = 0; j < b.rows; ++j) {
      const float* vr = vf + j * d + c0;
      __m512 x[4];
      for (int v = 0; v < 4; ++v) x[v] = _mm512_load_ps(vr + 16 * v);
      for (int r = 0; r < R; ++r) {
        const __m512 pb = _mm512_set1_ps(p[r][j]);
        for (int v = 0; v < 4; ++v) a[r][v] = _mm512_fmadd_ps(pb, x[v], a[r][v]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) _mm512_storeu_ps(st[r]->acc + c0 + 16 * v, a[r][v]);
  }
}

// ---- INT-FlashAttention ----

struct Int8Block {
  int rows = 0;
  alignas(64) float sk[kKeys];     // per key; 0 past the rows
  alignas(64) float sv255[kMaxD];  // sv_c / 255
  alignas(64) int8_t k8[kKeys * kMaxD];
  PackedKeys pk;
  // V for vpdpbusd: vp[g * d + c] holds channel c of keys 4g .. 4g + 3, a byte each.
  alignas(64) int32_t vp[kKeys / 4 * kMaxD];
};

void quantize_int8_block(const uint16_t* k, const uint16_t* v, int rows, int d, Int8Block* b) {
  b->rows = rows;
  for (int j = 0; j < kKeys; ++j) {  // K per token
    if (j >= rows) {
      b->sk[j] = 0.0f;
      std::memset(b->k8 + j * d, 0, static_cast<size_t>(d));
      continue;
    }
    __m512 m = _mm512_setzero_ps();
    for (int c = 0; c < d; c += 16) m = _mm512_max_ps(m, _mm512_abs_ps(load16h(k + j * d + c)));
    b->sk[j] = _mm512_reduce_max_ps(m) / 127.0f;
    const __m512 ik = _mm512_set1_ps(b->sk[j] > 0.0f ? 1.0f / b->sk[j] : 0.0f);
    for (int c = 0; c < d; c += 16)
      _mm_store_si128(reinterpret_cast<__m128i*>(b->k8 + j * d + c),
                      _mm512_cvtsepi32_epi8(round_i32(_mm512_mul_ps(load16h(k + j * d + c), ik))));
  }
  pack_keys(b->k8, d, &b->pk);
  const __m512i byte = _mm512_set1_epi32(0xFF);
  for (int c = 0; c < d; c += 16) {  // V per channel over the block's rows
    __m512 vmax = _mm512_setzero_ps();
    for (int j = 0; j < rows; ++j) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(load16h(v + j * d + c)));
    const __m512 sv = _mm512_div_ps(vmax, _mm512_set1_ps(127.0f));
    const __m512 iv = inv_or_zero(sv);
    _mm512_store_ps(b->sv255 + c, _mm512_div_ps(sv, _mm512_set1_ps(255.0f)));
    for (int g = 0; g < kKeys / 4; ++g) {
      __m512i w = _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) {
        const int j = 4 * g + i;
        if (j >= rows) break;
        const __m512i x = _mm512_and_si512(round_i32(_mm512_mul_ps(load16h(v + j * d + c), iv)), byte);
        w = _mm512_or_si512(w, _mm512_slli_epi32(x, 8 * i));
      }
      _mm512_store_si512(b->vp + g * d + c, w);
    }
  }
}

// R rows through one int8 block.
template <int R>
void int8_rows(const QRow* const* q, const Int8Block& b, int d, float scale, RowState* const* st) {
  __m512i dot[R];
  block_dots<R>(q, b.pk, d, dot);
  const __mmask16 live = static_cast<__mmask16>((1u << b.rows) - 1);
  const __m512 sk = _mm512_load_ps(b.sk);
  __m512 e[R];
  for (int r = 0; r < R; ++r)
    e[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(dot[r]),
                         _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(q[r]->sq), sk), _mm512_set1_ps(scale)));
  float ms[R];
  raise_max<R>(st, e, live, ms);
  alignas(64) int32_t p4[R][kKeys / 4];  // p8 of keys 4g .. 4g + 3, a byte each
  alignas(64) float psum[16] = {};       // each row's sum of p8, then / 255 (one division for all rows)
  for (int r = 0; r < R; ++r) {
    const __m512i p8 = round_i32(_mm512_mul_ps(_mm512_set1_ps(255.0f), e[r]));
    psum[r] = static_cast<float>(_mm512_reduce_add_epi32(p8));
    _mm_store_si128(reinterpret_cast<__m128i*>(p4[r]), _mm512_cvtepi32_epi8(p8));
  }
  _mm512_store_ps(psum, _mm512_div_ps(_mm512_load_ps(psum), _mm512_set1_ps(255.0f)));
  for (int r = 0; r < R; ++r) st[r]->l += psum[r];
  const int groups = (b.rows + 3) / 4;
  for (int c0 = 0; c0 < d; c0 += 64) {
    __m512i pv[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) pv[r][v] = _mm512_setzero_si512();
    for (int g = 0; g < groups; ++g) {
      __m512i x[4];
      for (int v = 0; v < 4; ++v) x[v] = _mm512_load_si512(b.vp + g * d + c0 + 16 * v);
      for (int r = 0; r < R; ++r) {
        const __m512i pb = _mm512_set1_epi32(p4[r][g]);
        for (int v = 0; v < 4; ++v) pv[r][v] = _mm512_dpbusd_epi32(pv[r][v], pb, x[v]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) {
        float* a = st[r]->acc + c0 + 16 * v;
        const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_set1_ps(ms[r]));
        _mm512_storeu_ps(
            a, _mm512_add_ps(x, _mm512_mul_ps(_mm512_cvtepi32_ps(pv[r][v]), _mm512_load_ps(b.sv255 + c0 + 16 * v))));
      }
  }
}

void finish(const RowState& st, int d, float* out) {
  const __m512 inv = _mm512_set1_ps(st.l == 0.0f ? 0.0f : 1.0f / st.l);
  for (int c = 0; c < d; c += 16) _mm512_storeu_ps(out + c, _mm512_mul_ps(_mm512_loadu_ps(st.acc + c), inv));
}

bool has_vector_path(const KvBlocks<uint16_t>& kv, int d) { return d % 64 == 0 && d <= kMaxD && kv.block_len <= kKeys; }

}  // namespace

void attend_tile_sage_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  if (!has_vector_path(kv, d)) return avx2::attend_tile_sage_f16(kv, d, rows, scale, scratch);
  thread_local SageBlock blk;
  alignas(64) thread_local float vf[kKeys * kMaxD];
  run_int8_tile<kTileR, QRow, RowState>(
      kv, d, rows, scratch, quantize_q, finish,
      [&](const uint16_t* k, const uint16_t* v, int cnt, int avail) {
        if (cnt == avail)
          for (int i = 0; i < avail * d; i += 16) _mm512_storeu_ps(vf + i, load16h(v + i));
        quantize_sage_block(k, cnt, d, &blk);
      },
      [&]<int R>(const QRow* const* q, RowState* const* st) { sage_rows<R>(q, blk, vf, d, scale, st); });
}

void attend_tile_int8_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  if (!has_vector_path(kv, d)) return avx2::attend_tile_int8_f16(kv, d, rows, scale, scratch);
  thread_local Int8Block blk;
  run_int8_tile<kTileR, QRow, RowState>(
      kv, d, rows, scratch, quantize_q, finish,
      [&](const uint16_t* k, const uint16_t* v, int cnt, int) { quantize_int8_block(k, v, cnt, d, &blk); },
      [&]<int R>(const QRow* const* q, RowState* const* st) { int8_rows<R>(q, blk, d, scale, st); });
}

}  // namespace kestrel::kernels::avx512
