// attn=int8 over a Q8_0 V (kernels/attention_quant.h, ref::attend_int8_quant):
// the twin's operations with P.V on the integer units. AVX2 has no u8 x s8
// dot product into 32 bits (that is VNNI's vpdpbusd); its pair is maddubs
// (u8 x s8, adjacent pairs summed into int16) then madd with ones (adjacent
// int16 pairs into int32): four keys' products per channel in two instructions,
// once the four V rows are interleaved so that each 32-bit lane holds one
// channel of four consecutive keys (the layout VNNI reads, made here with six
// unpacks per four rows of 32 channels).
//
// Channel order: after the unpacks, register i of a 32-channel group holds
// channels 4i..4i+3 in its low 128 bits and 16+4i..16+4i+3 in its high 128
// bits (unpack works within 128-bit lanes). The float accumulators keep that
// order and the output is written back in channel order at the end.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/avx2/attention_avx2.h"
#include "kernels/avx2/attention_quant-inl.h"

namespace kestrel::kernels::avx2 {
namespace {

// Four rows' 32 values of one group, interleaved: x[i] as described above.
inline void interleave4(const int8_t *r0, const int8_t *r1, const int8_t *r2,
                        const int8_t *r3, __m256i *x) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(r0));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(r1));
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(r2));
  const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(r3));
  const __m256i ab_lo = _mm256_unpacklo_epi8(a, b),
                ab_hi = _mm256_unpackhi_epi8(a, b);
  const __m256i ce_lo = _mm256_unpacklo_epi8(c, e),
                ce_hi = _mm256_unpackhi_epi8(c, e);
  x[0] = _mm256_unpacklo_epi16(ab_lo, ce_lo);
  x[1] = _mm256_unpackhi_epi16(ab_lo, ce_lo);
  x[2] = _mm256_unpacklo_epi16(ab_hi, ce_hi);
  x[3] = _mm256_unpackhi_epi16(ab_hi, ce_hi);
}

// NG: 32-channel groups per head row when known at compile time (2 for 64, 4
// for 128: the accumulators stay in registers), 0 for any multiple of 32.
template <int NG>
void int8_quant(const KvQuantBlocks &kv, int64_t n, int d, const float *q,
                float scale, float *out) {
  alignas(64) uint8_t qq[512 * sizeof(float)];
  alignas(64) float s[72], p[72], dv[72];
  alignas(32) int32_t u[72];
  alignas(32) static const int8_t kZeroRow[32] = {};
  const int ng = NG ? NG : d / 32;
  __m256 acc[(NG ? NG : 16) * 4];
  kv.q_to_vec_dot(q, qq, d);
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d));
  const int64_t vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  const __m256i ones = _mm256_set1_epi16(1);
  for (int i = 0; i < 4 * ng; ++i)
    acc[i] = _mm256_setzero_ps();
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const auto [k, v, rows] = block_rows(kv, b, first, n);
    if (first + kv.block_len < n)
      prefetch_block(kv, b + 1, kr, vr, d);
    const float bmax = block_scores(kv, b, k, rows, kr, qq, q, d, scale, s);
    block_weights(s, rows, bmax, max, sum, acc, 4 * ng, p);
    // Rows past the block's end weigh nothing and read a zero row: a block of
    // 1 row (a windowed view) has no neighbours to read.
    const int rows8 = (rows + 7) & ~7;
    for (int j = rows; j < rows8; ++j)
      p[j] = 0.0f;
    const BlockQ8_0 *vrow[72];
    for (int j = 0; j < rows; ++j)
      vrow[j] = reinterpret_cast<const BlockQ8_0 *>(v + j * vr);
    for (int g = 0; g < ng; ++g) {
      for (int j = 0; j < rows; ++j)
        dv[j] = half_to_float(vrow[j][g].d);
      for (int j = rows; j < rows8; ++j)
        dv[j] = 0.0f;
      __m256 wmax = _mm256_setzero_ps();
      for (int j = 0; j < rows8; j += 8) {
        const __m256 w =
            _mm256_mul_ps(_mm256_load_ps(p + j), _mm256_load_ps(dv + j));
        _mm256_store_ps(dv + j, w); // dv now holds w
        wmax = _mm256_max_ps(wmax, w);
      }
      const float wm = hmax_ps(wmax);
      if (wm == 0.0f)
        continue;
      const __m256 inv = _mm256_set1_ps(kInt8PvLevels / wm);
      for (int j = 0; j < rows8; j += 8)
        _mm256_store_si256(
            reinterpret_cast<__m256i *>(u + j),
            _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(dv + j), inv)));
      __m256i isum[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                         _mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int j0 = 0; j0 < rows; j0 += 4) {
        const int8_t *r[4];
        for (int t = 0; t < 4; ++t)
          r[t] = j0 + t < rows ? vrow[j0 + t][g].qs : kZeroRow;
        __m256i x[4];
        interleave4(r[0], r[1], r[2], r[3], x);
        const uint32_t quad = static_cast<uint32_t>(u[j0]) |
                              static_cast<uint32_t>(u[j0 + 1]) << 8 |
                              static_cast<uint32_t>(u[j0 + 2]) << 16 |
                              static_cast<uint32_t>(u[j0 + 3]) << 24;
        const __m256i pw = _mm256_set1_epi32(static_cast<int>(quad));
        for (int i = 0; i < 4; ++i)
          isum[i] = _mm256_add_epi32(
              isum[i], _mm256_madd_epi16(_mm256_maddubs_epi16(pw, x[i]), ones));
      }
      const __m256 step = _mm256_set1_ps(wm / kInt8PvLevels);
      for (int i = 0; i < 4; ++i)
        acc[4 * g + i] =
            _mm256_fmadd_ps(step, _mm256_cvtepi32_ps(isum[i]), acc[4 * g + i]);
    }
  }
  const __m256 inv = _mm256_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
  alignas(32) float t[8];
  for (int g = 0; g < ng; ++g)
    for (int i = 0; i < 4; ++i) {
      _mm256_store_ps(t, _mm256_mul_ps(acc[4 * g + i], inv));
      std::memcpy(out + 32 * g + 4 * i, t, 4 * sizeof(float));
      std::memcpy(out + 32 * g + 16 + 4 * i, t + 4, 4 * sizeof(float));
    }
}

} // namespace

void attend_int8_quant(const KvQuantBlocks &kv, int64_t n, int d,
                       const float *q, float scale, float *out) {
  if (kv.v_type != DType::Q8_0 || d % 32 != 0 || d > 512 || kv.block_len > 64) {
    ref::attend_int8_quant(kv, n, d, q, scale, out);
    return;
  }
  if (d == 64)
    return int8_quant<2>(kv, n, d, q, scale, out);
  if (d == 128)
    return int8_quant<4>(kv, n, d, q, scale, out);
  int8_quant<0>(kv, n, d, q, scale, out);
}

} // namespace kestrel::kernels::avx2
