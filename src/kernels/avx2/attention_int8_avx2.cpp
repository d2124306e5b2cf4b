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
#include "kernels/f32_kernels.h"
#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx2/avx2-inl.h"

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

// Every row of the tile gets the bits of the row kernel over its own
// n_visible: a block is quantized once for all the rows that see it whole,
// and again for a row that sees only part of it (the twin's partial block
// uses the rows it holds).
template <class Block, class Quantize, class Step>
void attend_tile(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch,
                 Quantize&& quantize, Step&& step) {
  thread_local Block blk;
  thread_local QRow qr[kMaxTileRows];
  RowState st[kMaxTileRows];
  int64_t n_max = 0;
  for (int r = 0; r < rows.n; ++r) {
    quantize_q(rows.q[r], d, &qr[r]);
    st[r].acc = scratch + static_cast<size_t>(r) * d;  // tile_scratch_floats(d) >= kMaxTileRows * d
    std::fill(st[r].acc, st[r].acc + d, 0.0f);
    n_max = std::max(n_max, rows.n_visible[r]);
  }
  for (int64_t b = 0, first = 0; first < n_max; ++b, first += kv.block_len) {
    const uint16_t* k = kv.k + kv.ids[b] * kv.stride;
    const uint16_t* v = kv.v + kv.ids[b] * kv.stride;
    int have = -1;  // rows of the block that blk holds quantized
    for (int r = 0; r < rows.n; ++r) {
      const int64_t cnt = std::min(kv.block_len, rows.n_visible[r] - first);
      if (cnt <= 0) continue;
      if (cnt != have) {
        quantize(k, v, static_cast<int>(cnt), d, &blk);
        have = static_cast<int>(cnt);
      }
      step(qr[r], blk, v, d, scale, &st[r]);
    }
  }
  for (int r = 0; r < rows.n; ++r) finish(st[r], d, rows.out[r]);
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
  attend_tile<SageBlock>(kv, d, rows, scale, scratch, sage_quantize, sage_run);
}
void attend_int8_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  if (d % 32 != 0 || kv.block_len > kMaxBlock) return ref::attend_int8_f16(kv, n, d, q, scale, out);
  attend_row<Int8Block>(kv, n, d, q, scale, out, int8_quantize, int8_run);
}
void attend_tile_int8_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  if (d % 32 != 0 || kv.block_len > kMaxBlock) return ref::attend_tile_int8_f16(kv, d, rows, scale, scratch);
  attend_tile<Int8Block>(kv, d, rows, scale, scratch, int8_quantize, int8_run);
}

}  // namespace kestrel::kernels::avx2
