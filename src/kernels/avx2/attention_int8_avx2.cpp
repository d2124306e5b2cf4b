// AVX2 SageAttention and INT-FlashAttention over an F16 cache: the arithmetic
// of the scalar twins (kernels/ref/attention_sage_ref.cpp,
// attention_int8_ref.cpp), the same bits. K (and for int8, V) are quantized per
// KV block on the fly: the cache stays F16 (see kernels/attention_sage.h).
//
// Integer products without VNNI, and int16 saturation:
//  - QK^T: _mm256_maddubs_epi16 multiplies u8 x s8 and adds adjacent pairs into
//    int16. The VNNI form (q8 + 128 as the u8 operand) would reach
//    2 * 255 * 127 = 64770 > 32767 and saturate, so this uses the sign trick:
//    u8 = |q8|, s8 = k8 with q8's sign; |q8|, |k8| <= 127 keep a pair sum within
//    2 * 127 * 127 = 32258. The integer is sum q8 k8, which the twin writes as
//    sum (q8 + 128) k8 - 128 sum k8: the same number.
//  - PV (int8): P is u8 up to 255, so pairs of u8 x s8 could reach 64770 too;
//    V is widened to int16 and _mm256_madd_epi16 (int16 x int16 -> pairs into
//    int32) takes the products of two keys at once: exact.
// Both dot products are integers, so their order is free; the float steps
// (means, scales, the q . mean correction, softmax, PV in float) follow the
// twins' order element by element.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/attention_int8.h"
#include "kernels/attention_sage.h"
#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx2/avx2-inl.h"
#include "kernels/f32_kernels.h"
#include "kernels/int8_tile_walk.h"

namespace kestrel::kernels::avx2 {
namespace {

constexpr int kMaxBlock = 64;  // the twins' limit on kv.block_len

inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256i round_i32(__m256 x) {
  return _mm256_cvtps_epi32(_mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
// 32 int32 in [-127, 127] -> 32 int8, in the order the packs leave them (not
// channel order: both operands of a dot product are packed alike, and an
// integer sum does not care).
inline __m256i pack32(__m256i x0, __m256i x1, __m256i x2, __m256i x3) {
  return _mm256_packs_epi16(_mm256_packs_epi32(x0, x1), _mm256_packs_epi32(x2, x3));
}
// 1 / s, or 0 where s is 0 (the twins' s > 0 ? 1 / s : 0).
inline __m256 inv_or_zero(__m256 s) {
  const __m256 pos = _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_and_ps(pos, _mm256_div_ps(_mm256_set1_ps(1.0f), s));
}
inline float hmax_abs(const float* x, int d) {
  __m256 m = _mm256_setzero_ps();
  for (int c = 0; c < d; c += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + c)));
  return hmax_ps(m);
}

// A query row as INT8: |q8| (the u8 operand) and q8 (whose sign goes onto k8).
struct QRow {
  float sq;
  const float* q;
  alignas(32) int8_t abs8[512];
  alignas(32) int8_t sgn8[512];
};

void quantize_q(const float* q, int d, QRow* out) {
  out->q = q;
  out->sq = hmax_abs(q, d) / 127.0f;
  const float iq = out->sq > 0.0f ? 1.0f / out->sq : 0.0f;
  const __m256 vi = _mm256_set1_ps(iq);
  for (int c = 0; c < d; c += 32) {
    __m256i x[4];
    for (int i = 0; i < 4; ++i) x[i] = round_i32(_mm256_mul_ps(_mm256_loadu_ps(q + c + 8 * i), vi));
    const __m256i p = pack32(x[0], x[1], x[2], x[3]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out->sgn8 + c), p);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out->abs8 + c), _mm256_sign_epi8(p, p));
  }
}

// QK^T of the prompt tiles: maddubs with the sign trick on INT8 keys. The
// other way without VNNI, madd on keys and q widened to int16 pairs, is as many
// instructions per 32 products; on Zen 3 the two tiles ran within the machine's
// noise of each other (docs/benchmarks.md), and INT8 keys are half the bytes.

// sum_c q8_c k8_c over d channels (packed alike).
inline int32_t dot_q8(const QRow& q, const int8_t* k8, int d) {
  __m256i acc = _mm256_setzero_si256();
  for (int c = 0; c < d; c += 32) {
    const __m256i k = _mm256_load_si256(reinterpret_cast<const __m256i*>(k8 + c));
    const __m256i s = _mm256_load_si256(reinterpret_cast<const __m256i*>(q.sgn8 + c));
    const __m256i a = _mm256_load_si256(reinterpret_cast<const __m256i*>(q.abs8 + c));
    acc = _mm256_add_epi32(acc, dot_u8s8(a, _mm256_sign_epi8(k, s)));
  }
  return hsum_epi32(acc);
}

// The softmax state of one query row.
struct RowState {
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  float* acc = nullptr;  // [d]
};

// A block whose largest score is bmax joins the row: the running sum and
// accumulator are rescaled to the new max, which is returned.
float raise_max(RowState* st, float bmax, int d) {
  const float mnew = std::max(st->m, bmax);
  const float ms = kernels::exp_approx(st->m - mnew);
  const __m256 vms = _mm256_set1_ps(ms);
  for (int c = 0; c < d; c += 8) _mm256_storeu_ps(st->acc + c, _mm256_mul_ps(_mm256_loadu_ps(st->acc + c), vms));
  st->l *= ms;
  st->m = mnew;
  return mnew;
}

void finish(const RowState& st, int d, float* out) {
  const __m256 inv = _mm256_set1_ps(st.l == 0.0f ? 0.0f : 1.0f / st.l);
  for (int c = 0; c < d; c += 8) _mm256_storeu_ps(out + c, _mm256_mul_ps(_mm256_loadu_ps(st.acc + c), inv));
}

// e[j] = exp_approx(s[j] - m) for j < rows, 8 keys at a time (the same bits).
inline void block_exp(const float* s, int rows, float m, float* e) {
  alignas(32) float buf[kMaxBlock + 8];
  const __m256 mv = _mm256_set1_ps(m);
  for (int j = 0; j < rows; j += 8) {
    alignas(32) float x[8];
    for (int i = 0; i < 8; ++i) x[i] = j + i < rows ? s[j + i] : m;
    _mm256_store_ps(buf + j, exp_approx8(_mm256_sub_ps(_mm256_load_ps(x), mv)));
  }
  std::memcpy(e, buf, sizeof(float) * static_cast<size_t>(rows));
}

// ---- SageAttention ----

// One KV block's keys, smoothed by their mean and quantized (twin: the block
// loop of attend_sage_f16).
struct SageBlock {
  int rows = 0;
  float sk = 0.0f;
  alignas(32) float mean[512];
  alignas(32) int8_t k8[kMaxBlock * 512];
};

void quantize_sage_block(const uint16_t* k, int rows, int d, SageBlock* b) {
  b->rows = rows;
  const __m256 nr = _mm256_set1_ps(static_cast<float>(rows));
  __m256 kmax = _mm256_setzero_ps();
  for (int c = 0; c < d; c += 8) {
    __m256 s = _mm256_setzero_ps();
    for (int j = 0; j < rows; ++j) s = _mm256_add_ps(s, load8(k + j * d + c));
    const __m256 mean = _mm256_div_ps(s, nr);
    _mm256_store_ps(b->mean + c, mean);
    for (int j = 0; j < rows; ++j) kmax = _mm256_max_ps(kmax, abs_ps(_mm256_sub_ps(load8(k + j * d + c), mean)));
  }
  b->sk = hmax_ps(kmax) / 127.0f;
  const __m256 ik = _mm256_set1_ps(b->sk > 0.0f ? 1.0f / b->sk : 0.0f);
  for (int j = 0; j < rows; ++j)
    for (int c = 0; c < d; c += 32) {
      __m256i x[4];
      for (int i = 0; i < 4; ++i) {
        const __m256 kf = _mm256_sub_ps(load8(k + j * d + c + 8 * i), _mm256_load_ps(b->mean + c + 8 * i));
        x[i] = round_i32(_mm256_mul_ps(kf, ik));
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(b->k8 + j * d + c), pack32(x[0], x[1], x[2], x[3]));
    }
}

// q . mean in the twin's order: 8 lanes of fma over c, folded like hsum_ps.
inline float dot8(const float* a, const float* b, int d) {
  __m256 acc = _mm256_setzero_ps();
  for (int c = 0; c < d; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), acc);
  return hsum_ps(acc);
}

// One query row over one block: scores, one rescale, PV in float over the F16 values.
void sage_step(const QRow& q, const SageBlock& b, const uint16_t* v, int d, float scale, RowState* st) {
  const float qm = dot8(q.q, b.mean, d);
  const float ds = q.sq * b.sk * scale;
  float s[kMaxBlock];
  float bmax = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < b.rows; ++j) {
    s[j] = static_cast<float>(dot_q8(q, b.k8 + j * d, d)) * ds + qm * scale;
    bmax = std::max(bmax, s[j]);
  }
  const float mnew = raise_max(st, bmax, d);
  float e[kMaxBlock];
  block_exp(s, b.rows, mnew, e);
  for (int j = 0; j < b.rows; ++j) {
    const float p = e[j];
    st->l += p;
    const __m256 vp = _mm256_set1_ps(p);
    for (int c = 0; c < d; c += 8)
      _mm256_storeu_ps(st->acc + c, _mm256_fmadd_ps(vp, load8(v + j * d + c), _mm256_loadu_ps(st->acc + c)));
  }
}

// ---- INT-FlashAttention ----

struct Int8Block {
  int rows = 0;
  alignas(32) float sk[kMaxBlock];
  alignas(32) float sv255[512];  // sv_c / 255
  alignas(32) int8_t k8[kMaxBlock * 512];
  // V as int16 pairs of keys: vp[(j / 2) * d + c] = v8[j][c] | v8[j + 1][c] << 16.
  alignas(32) int32_t vp[kMaxBlock / 2 * 512];
};

void quantize_int8_block(const uint16_t* k, const uint16_t* v, int rows, int d, Int8Block* b) {
  b->rows = rows;
  alignas(32) float row[512];
  for (int j = 0; j < rows; ++j) {  // K per token
    for (int c = 0; c < d; c += 8) _mm256_store_ps(row + c, load8(k + j * d + c));
    b->sk[j] = hmax_abs(row, d) / 127.0f;
    const __m256 ik = _mm256_set1_ps(b->sk[j] > 0.0f ? 1.0f / b->sk[j] : 0.0f);
    for (int c = 0; c < d; c += 32) {
      __m256i x[4];
      for (int i = 0; i < 4; ++i) x[i] = round_i32(_mm256_mul_ps(_mm256_load_ps(row + c + 8 * i), ik));
      _mm256_store_si256(reinterpret_cast<__m256i*>(b->k8 + j * d + c), pack32(x[0], x[1], x[2], x[3]));
    }
  }
  const __m256i lo16 = _mm256_set1_epi32(0xFFFF);
  for (int c = 0; c < d; c += 8) {  // V per channel over the block's rows
    __m256 vmax = _mm256_setzero_ps();
    for (int j = 0; j < rows; ++j) vmax = _mm256_max_ps(vmax, abs_ps(load8(v + j * d + c)));
    const __m256 sv = _mm256_div_ps(vmax, _mm256_set1_ps(127.0f));
    const __m256 iv = inv_or_zero(sv);
    _mm256_store_ps(b->sv255 + c, _mm256_div_ps(sv, _mm256_set1_ps(255.0f)));
    for (int j = 0; j < rows; j += 2) {
      const __m256i x = round_i32(_mm256_mul_ps(load8(v + j * d + c), iv));
      const __m256i y = j + 1 < rows ? round_i32(_mm256_mul_ps(load8(v + (j + 1) * d + c), iv)) : _mm256_setzero_si256();
      _mm256_store_si256(reinterpret_cast<__m256i*>(b->vp + (j / 2) * d + c),
                         _mm256_or_si256(_mm256_and_si256(x, lo16), _mm256_slli_epi32(y, 16)));
    }
  }
}

void int8_step(const QRow& q, const Int8Block& b, int d, float scale, RowState* st) {
  float s[kMaxBlock];
  float bmax = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < b.rows; ++j) {
    s[j] = static_cast<float>(dot_q8(q, b.k8 + j * d, d)) * (q.sq * b.sk[j] * scale);
    bmax = std::max(bmax, s[j]);
  }
  const float mnew = raise_max(st, bmax, d);
  float e[kMaxBlock];
  block_exp(s, b.rows, mnew, e);
  int32_t pp[kMaxBlock / 2];  // p8 of keys j, j + 1 as one int16 pair
  int32_t psum = 0;
  for (int j = 0; j < b.rows; j += 2) {
    const int32_t p0 = static_cast<uint8_t>(std::nearbyint(255.0f * e[j]));
    const int32_t p1 = j + 1 < b.rows ? static_cast<uint8_t>(std::nearbyint(255.0f * e[j + 1])) : 0;
    psum += p0 + p1;
    pp[j / 2] = p0 | (p1 << 16);
  }
  st->l += static_cast<float>(psum) / 255.0f;
  const int pairs = (b.rows + 1) / 2;
  for (int c = 0; c < d; c += 8) {
    __m256i pv = _mm256_setzero_si256();
    for (int i = 0; i < pairs; ++i)
      pv = _mm256_add_epi32(pv, _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(b.vp + i * d + c)),
                                                  _mm256_set1_epi32(pp[i])));
    const __m256 a = _mm256_loadu_ps(st->acc + c);
    _mm256_storeu_ps(st->acc + c, _mm256_add_ps(a, _mm256_mul_ps(_mm256_cvtepi32_ps(pv), _mm256_load_ps(b.sv255 + c))));
  }
}

// ---- the walk over blocks, for one row and for a tile ----

// Algo: quantize(kv block pointers, rows, d, block*) and step(q, block, v, d, scale, state).
template <class Block, class Quantize, class Step>
void attend_row(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out,
                Quantize&& quantize, Step&& step) {
  thread_local Block blk;
  QRow qr;
  alignas(32) float acc[512];
  std::fill(acc, acc + d, 0.0f);
  quantize_q(q, d, &qr);
  RowState st;
  st.acc = acc;
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const uint16_t* k = kv.k + kv.ids[b] * kv.stride;
    const uint16_t* v = kv.v + kv.ids[b] * kv.stride;
    const int rows = static_cast<int>(std::min(kv.block_len, n - first));
    quantize(k, v, rows, d, &blk);
    step(qr, blk, v, d, scale, &st);
  }
  finish(st, d, out);
}

// ---- prompt tiles: the K block reused across query rows ----
//
// The walk over blocks (kernels/int8_tile_walk.h) takes kTileR query rows at
// a time through each block:
//  - QK^T: the block's INT8 keys are transposed once into the VNNI layout,
//    kp[c/4][key][4 channels] (one key per 32-bit lane, 8 keys a register),
//    so a broadcast of 4 channels of |q8| against a register of keys scores 8
//    keys with no horizontal sum: maddubs (u8 |q8| x s8 k8 with q8's sign,
//    pairs within 2 * 127 * 127 < 2^15) then madd by ones into int32. Without
//    VNNI that is 4 instructions (sign, maddubs, madd, add) per 32 products,
//    as many as FMAs need, but 2 of them are multiplies and the other 2 go to
//    any of Zen 3's 4 vector pipes, where F32 FMAs have 2.
//    Register budget: kTileR = 3 rows x 2 key registers = 6 int32
//    accumulators, the 2 key registers, 2 broadcasts and the ones.
//  - softmax per row, as the row kernel does it (one rescale per block).
//  - PV: 3 rows x 32 output columns = 12 accumulators, values read as memory
//    operands: sage's F32 FMAs over the block's values widened once; int8's
//    madd of pairs of keys (int16 V pairs x int16 P pairs, exact) into int32.
constexpr int kTileR = 3;

// A block's keys in the VNNI layout: kp[(c4 * nkv + j / 8) * 8 + j % 8] holds
// channels 4 c4 .. 4 c4 + 3 of key j (in pack32's channel order, the order of
// QRow's bytes), keys past `rows` zero.
struct PackedKeys {
  int nkv = 0;  // registers of 8 keys
  alignas(32) int32_t kp[kMaxBlock * 512 / 4];
};

void pack_keys(const int8_t* k8, int rows, int d, PackedKeys* pk) {
  const int nkv = (rows + 7) / 8;
  pk->nkv = nkv;
  __m256i* out = reinterpret_cast<__m256i*>(pk->kp);
  for (int jv = 0; jv < nkv; ++jv)
    for (int c = 0; c < d; c += 32) {
      // 8 keys x 8 groups of 4 channels, transposed as 8 x 8 int32.
      __m256i x[8];
      for (int i = 0; i < 8; ++i) {
        const int j = 8 * jv + i;
        x[i] = j >= rows ? _mm256_setzero_si256() : _mm256_load_si256(reinterpret_cast<const __m256i*>(k8 + j * d + c));
      }
      __m256i t[8], u[8];
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(x[i], x[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(x[i], x[i + 1]);
      }
      for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
      }
      const int c4 = c / 4;
      for (int i = 0; i < 4; ++i) {
        _mm256_store_si256(out + (c4 + i) * nkv + jv, _mm256_permute2x128_si256(u[i], u[i + 4], 0x20));
        _mm256_store_si256(out + (c4 + 4 + i) * nkv + jv, _mm256_permute2x128_si256(u[i], u[i + 4], 0x31));
      }
    }
}

// dot[r][jv] (8 keys a lane) = sum_c q8_c k8_jc for R rows and NV key registers
// starting at register jv0.
// hook(c4) runs once per step of 4 channels (sage's q . mean rides along: its
// chain of dependent FMAs would otherwise stall the row group on latency).
template <int R, int NV, class Hook>
inline void tile_dots(const QRow* const* q, const PackedKeys& pk, int jv0, int d, __m256i (&out)[R][NV], Hook&& hook) {
  __m256i dot[R][NV];  // in registers (not through `out`, which the compiler would keep in memory)
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) dot[r][v] = _mm256_setzero_si256();
  const __m256i* kp = reinterpret_cast<const __m256i*>(pk.kp) + jv0;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int c4 = 0; c4 < d / 4; ++c4, kp += pk.nkv) {
    hook(c4);
    __m256i k[NV];
    for (int v = 0; v < NV; ++v) k[v] = _mm256_load_si256(kp + v);
    for (int r = 0; r < R; ++r) {
      int32_t a4, s4;
      std::memcpy(&a4, q[r]->abs8 + 4 * c4, 4);
      std::memcpy(&s4, q[r]->sgn8 + 4 * c4, 4);
      const __m256i a = _mm256_set1_epi32(a4), sg = _mm256_set1_epi32(s4);
      for (int v = 0; v < NV; ++v)
        dot[r][v] =
            _mm256_add_epi32(dot[r][v], _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(k[v], sg)), ones));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) out[r][v] = dot[r][v];
}

// s[r][j] for the block's keys (every lane of nkv registers; lanes past the
// block's rows are not used): conv(r, v, dot) turns 8 integer dots into scores.
template <int R, class Conv, class Hook>
inline void tile_scores(const QRow* const* q, const PackedKeys& pk, int d, float (*s)[kMaxBlock], Conv&& conv,
                        Hook&& hook) {
  auto none = [](int) {};
  int jv = 0;
  for (; jv + 2 <= pk.nkv; jv += 2) {
    __m256i dot[R][2];
    if (jv == 0)
      tile_dots<R, 2>(q, pk, jv, d, dot, hook);
    else
      tile_dots<R, 2>(q, pk, jv, d, dot, none);
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 2; ++v) _mm256_store_ps(s[r] + 8 * (jv + v), conv(r, jv + v, dot[r][v]));
  }
  if (jv < pk.nkv) {
    __m256i dot[R][1];
    if (jv == 0)
      tile_dots<R, 1>(q, pk, jv, d, dot, hook);
    else
      tile_dots<R, 1>(q, pk, jv, d, dot, none);
    for (int r = 0; r < R; ++r) _mm256_store_ps(s[r] + 8 * jv, conv(r, jv, dot[r][0]));
  }
}

// The largest of s[0..rows) (s holds whole registers of 8; a max is exact in
// any order).
inline float block_max(const float* s, int rows) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int j = 0; j < rows; j += 8) {
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(rows - j), lane));
    m = _mm256_blendv_ps(m, _mm256_max_ps(m, _mm256_load_ps(s + j)), keep);
  }
  return hmax_ps(m);
}

// A block's values as F32 [rows][d] (sage's P.V reads them once per row).
struct ValuesF32 {
  alignas(32) float v[kMaxBlock * 512];
};

void widen_values(const uint16_t* v, int rows, int d, ValuesF32* out) {
  for (int i = 0; i < rows * d; i += 8) _mm256_store_ps(out->v + i, load8(v + i));
}

// The row kernel's raise_max and block_exp for R rows: each running max rises
// to its block's, ms[r] = e^(old - new) (exp_approx8: exp_approx's bits, R rows
// in one register), l[r] *= ms[r], and s[r][j] becomes e^(s[r][j] - max).
template <int R>
void new_max(float (*s)[kMaxBlock], int rows, RowState* const* st, float* ms) {
  float x[8] = {};
  for (int r = 0; r < R; ++r) {
    const float mnew = std::max(st[r]->m, block_max(s[r], rows));
    x[r] = st[r]->m - mnew;
    st[r]->m = mnew;
  }
  _mm256_store_ps(ms, exp_approx8(_mm256_setr_ps(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7])));
  for (int r = 0; r < R; ++r) {
    st[r]->l *= ms[r];
    const __m256 mv = _mm256_set1_ps(st[r]->m);
    for (int j = 0; j < rows; j += 8)
      _mm256_store_ps(s[r] + j, exp_approx8(_mm256_sub_ps(_mm256_load_ps(s[r] + j), mv)));
  }
}

// R rows over one sage block (the row kernel's sage_step for each).
template <int R>
void sage_tile_rows(const QRow* const* q, const SageBlock& b, const PackedKeys& pk, const ValuesF32& vf, int d,
                    float scale, RowState* const* st) {
  // q . mean for the R rows (each dot8's order: 8 lanes of FMAs over c, then
  // hsum_ps), 8 channels every other step of the integer dot products.
  __m256 qm[R];
  for (int r = 0; r < R; ++r) qm[r] = _mm256_setzero_ps();
  float ds[R], qms[R];
  for (int r = 0; r < R; ++r) ds[r] = q[r]->sq * b.sk * scale;
  alignas(32) float s[R][kMaxBlock];
  tile_scores<R>(
      q, pk, d, s,
      [&](int r, int, __m256i dot) {
        if (r == 0)
          for (int i = 0; i < R; ++i) qms[i] = hsum_ps(qm[i]) * scale;
        return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(ds[r])), _mm256_set1_ps(qms[r]));
      },
      [&](int c4) {
        if (c4 % 2) return;
        const __m256 m = _mm256_load_ps(b.mean + 4 * c4);
        for (int r = 0; r < R; ++r) qm[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q[r]->q + 4 * c4), m, qm[r]);
      });
  alignas(32) float ms[8];
  new_max<R>(s, b.rows, st, ms);
  float l[R];  // the row kernel's sum, key by key (R chains side by side, in registers)
  for (int r = 0; r < R; ++r) l[r] = st[r]->l;
  for (int j = 0; j < b.rows; ++j)
    for (int r = 0; r < R; ++r) l[r] += s[r][j];
  for (int r = 0; r < R; ++r) st[r]->l = l[r];
  for (int c0 = 0; c0 < d; c0 += 32) {
    __m256 a[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v)
        a[r][v] = _mm256_mul_ps(_mm256_loadu_ps(st[r]->acc + c0 + 8 * v), _mm256_set1_ps(ms[r]));
    for (int j = 0; j < b.rows; ++j) {
      const float* vr = vf.v + j * d + c0;
      __m256 p[R];
      for (int r = 0; r < R; ++r) p[r] = _mm256_set1_ps(s[r][j]);
      for (int v = 0; v < 4; ++v) {
        const __m256 x = _mm256_load_ps(vr + 8 * v);
        for (int r = 0; r < R; ++r) a[r][v] = _mm256_fmadd_ps(p[r], x, a[r][v]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) _mm256_storeu_ps(st[r]->acc + c0 + 8 * v, a[r][v]);
  }
}

// R rows over one int8 block (the row kernel's int8_step for each).
template <int R>
void int8_tile_rows(const QRow* const* q, const Int8Block& b, const PackedKeys& pk, int d, float scale,
                    RowState* const* st) {
  alignas(32) float s[R][kMaxBlock];
  tile_scores<R>(
      q, pk, d, s,
      [&](int r, int jv, __m256i dot) {
        const __m256 ds = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(q[r]->sq), _mm256_load_ps(b.sk + 8 * jv)),
                                        _mm256_set1_ps(scale));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(dot), ds);
      },
      [](int) {});
  const int pairs = (b.rows + 1) / 2;
  alignas(32) int32_t pp[R][kMaxBlock / 2];  // p8 of keys 2i, 2i + 1 as one int16 pair
  alignas(32) float ms[8];
  new_max<R>(s, b.rows, st, ms);
  for (int r = 0; r < R; ++r) {
    const __m256 k255 = _mm256_set1_ps(255.0f);
    alignas(32) int32_t p8[kMaxBlock];
    for (int j = 0; j < b.rows; j += 8)
      _mm256_store_si256(reinterpret_cast<__m256i*>(p8 + j), round_i32(_mm256_mul_ps(k255, _mm256_load_ps(s[r] + j))));
    int32_t psum = 0;
    for (int j = 0; j < b.rows; ++j) psum += p8[j];
    if (b.rows % 2) p8[b.rows] = 0;
    for (int i = 0; i < pairs; ++i) pp[r][i] = p8[2 * i] | (p8[2 * i + 1] << 16);
    st[r]->l += static_cast<float>(psum) / 255.0f;
  }
  for (int c0 = 0; c0 < d; c0 += 32) {
    __m256i pv[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) pv[r][v] = _mm256_setzero_si256();
    for (int i = 0; i < pairs; ++i) {
      const __m256i* vr = reinterpret_cast<const __m256i*>(b.vp + i * d + c0);
      for (int r = 0; r < R; ++r) {
        const __m256i p = _mm256_set1_epi32(pp[r][i]);
        for (int v = 0; v < 4; ++v)
          pv[r][v] = _mm256_add_epi32(pv[r][v], _mm256_madd_epi16(_mm256_load_si256(vr + v), p));
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m256 vms = _mm256_set1_ps(ms[r]);
      for (int v = 0; v < 4; ++v) {
        float* a = st[r]->acc + c0 + 8 * v;
        const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(a), vms);
        _mm256_storeu_ps(
            a, _mm256_add_ps(x, _mm256_mul_ps(_mm256_cvtepi32_ps(pv[r][v]), _mm256_load_ps(b.sv255 + c0 + 8 * v))));
      }
    }
  }
}

auto sage_quantize = [](const uint16_t* k, const uint16_t*, int rows, int d, SageBlock* b) {
  quantize_sage_block(k, rows, d, b);
};
auto sage_run = [](const QRow& q, const SageBlock& b, const uint16_t* v, int d, float scale, RowState* st) {
  sage_step(q, b, v, d, scale, st);
};
auto int8_quantize = [](const uint16_t* k, const uint16_t* v, int rows, int d, Int8Block* b) {
  quantize_int8_block(k, v, rows, d, b);
};
auto int8_run = [](const QRow& q, const Int8Block& b, const uint16_t*, int d, float scale, RowState* st) {
  int8_step(q, b, d, scale, st);
};

}  // namespace

// Vector paths for d a multiple of 32 (the INT8 packs) and blocks of at most
// 64 rows; the twins cover the rest.
void attend_sage_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  if (d % 32 != 0 || kv.block_len > kMaxBlock) return ref::attend_sage_f16(kv, n, d, q, scale, out);
  attend_row<SageBlock>(kv, n, d, q, scale, out, sage_quantize, sage_run);
}
void attend_tile_sage_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  if (d % 32 != 0 || kv.block_len > kMaxBlock) return ref::attend_tile_sage_f16(kv, d, rows, scale, scratch);
  thread_local SageBlock blk;
  thread_local PackedKeys pk;
  thread_local ValuesF32 vf;
  run_int8_tile<kTileR, QRow, RowState>(
      kv, d, rows, scratch, quantize_q, finish,
      [&](const uint16_t* k, const uint16_t* v, int cnt, int avail) {
        if (cnt == avail) widen_values(v, avail, d, &vf);
        quantize_sage_block(k, cnt, d, &blk);
        pack_keys(blk.k8, cnt, d, &pk);
      },
      [&]<int R>(const QRow* const* q, RowState* const* st) { sage_tile_rows<R>(q, blk, pk, vf, d, scale, st); });
}
void attend_int8_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  if (d % 32 != 0 || kv.block_len > kMaxBlock) return ref::attend_int8_f16(kv, n, d, q, scale, out);
  attend_row<Int8Block>(kv, n, d, q, scale, out, int8_quantize, int8_run);
}
void attend_tile_int8_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  if (d % 32 != 0 || kv.block_len > kMaxBlock) return ref::attend_tile_int8_f16(kv, d, rows, scale, scratch);
  thread_local Int8Block blk;
  thread_local PackedKeys pk;
  run_int8_tile<kTileR, QRow, RowState>(
      kv, d, rows, scratch, quantize_q, finish,
      [&](const uint16_t* k, const uint16_t* v, int cnt, int) {
        quantize_int8_block(k, v, cnt, d, &blk);
        pack_keys(blk.k8, cnt, d, &pk);
      },
      [&]<int R>(const QRow* const* q, RowState* const* st) { int8_tile_rows<R>(q, blk, pk, d, scale, st); });
}

}  // namespace kestrel::kernels::avx2
