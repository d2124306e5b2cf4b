// AVX-512 VNNI dot products of the 32-block formats and the float types.
// Layout per zmm: two consecutive blocks, the weight quants expanded to bytes
// in element order (the activation's natural order), so one vpdpbusd sums 64
// products into 16 int32 lanes, 8 per block. The fp16 scales of 8 blocks are
// picked with vpermt2w (see avx512-inl.h) and spread to the lanes with vpermps.
// Weight operands go in vpdpbusd's unsigned slot (nibbles 0..15 / 0..31); the
// formats' offsets (-8, -16) are subtracted as offset * sum(activation).
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/avx512/avx512-inl.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/blocks.h"

namespace kestrel::kernels::avx512 {
namespace {

constexpr int kOffD[1] = {0};
constexpr int kOffDM[2] = {0, 2};  // d then m (or d then s)
constexpr int kGroup = 8;          // blocks per loop iteration

constexpr GatherPlan kQ4_0D = make_gather_plan(8, sizeof(BlockQ4_0), 1, kOffD, 8 * sizeof(BlockQ4_0));
constexpr GatherPlan kQ5_0D = make_gather_plan(8, sizeof(BlockQ5_0), 1, kOffD, 8 * sizeof(BlockQ5_0));
constexpr GatherPlan kQ8_0D = make_gather_plan(8, sizeof(BlockQ8_0), 1, kOffD, 8 * sizeof(BlockQ8_0));
constexpr GatherPlan kQ4_1DM = make_gather_plan(16, sizeof(BlockQ4_1), 2, kOffDM, 8 * sizeof(BlockQ4_1));
constexpr GatherPlan kQ5_1DM = make_gather_plan(16, sizeof(BlockQ5_1), 2, kOffDM, 8 * sizeof(BlockQ5_1));
constexpr GatherPlan kQ8_1DS = make_gather_plan(16, sizeof(BlockQ8_1), 2, kOffDM, 8 * sizeof(BlockQ8_1));

template <class Block, const GatherPlan& kPlan>
inline __m256 block_halves8(const Block* b) {
  return _mm256_cvtph_ps(_mm512_castsi512_si128(gather_u16<kPlan>(reinterpret_cast<const uint8_t*>(b))));
}

template <class Block, const GatherPlan& kPlan>
inline __m512 block_halves16(const Block* b) {
  return _mm512_cvtph_ps(_mm512_castsi512_si256(gather_u16<kPlan>(reinterpret_cast<const uint8_t*>(b))));
}

// Two blocks' 16 packed nibble bytes -> 64 bytes 0..15 in element order:
// [b0 low nibbles | b0 high | b1 low | b1 high], one 128-bit lane each.
inline __m512i nibbles_pair(const uint8_t* qs0, const uint8_t* qs1) {
  __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0)));
  v = _mm512_mask_broadcast_i32x4(v, 0xFF00, _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)));
  const __m512i shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
  return _mm512_and_si512(_mm512_srlv_epi64(v, shift), _mm512_set1_epi8(0x0F));
}

inline __m512i bytes_pair(const int8_t* q0, const int8_t* q1) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q1)), 1);
}

// Fifth bits of two Q5 blocks as a 64-bit lane mask in element order.
inline __mmask64 fifth_bits_pair(const uint8_t* qh0, const uint8_t* qh1) {
  uint32_t a, b;
  __builtin_memcpy(&a, qh0, 4);
  __builtin_memcpy(&b, qh1, 4);
  return _cvtu64_mask64(static_cast<uint64_t>(a) | (static_cast<uint64_t>(b) << 32));
}

// Per-lane scales for pair k from a vector whose block b value sits at lane stride*b.
inline __m512 pair_scale_strided(__m512 v, int k, int stride) {
  const int a = stride * 2 * k, b = stride * (2 * k + 1);
  const __m512i idx = _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a);
  return _mm512_permutexvar_ps(idx, v);
}

// Unsigned weight bytes (offset `off` already removed from the format's range)
// times activation bytes, minus off * sum(activation), as 16 int32 lanes.
inline __m512i dot_offset(__m512i w, __m512i a, __m512i off) {
  const __m512i z = _mm512_setzero_si512();
  return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, w, a), _mm512_dpbusd_epi32(z, off, a));
}

}  // namespace

float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  const __m512i eight = _mm512_set1_epi8(8);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kGroup <= nb; i += kGroup) {
    const __m512 s = _mm512_castps256_ps512(
        _mm256_mul_ps(block_halves8<BlockQ4_0, kQ4_0D>(x + i), block_halves8<BlockQ8_0, kQ8_0D>(y + i)));
    for (int k = 0; k < 4; k += 2) {
      const int64_t b = i + 2 * k;
      const __m512i p0 = dot_offset(nibbles_pair(x[b].qs, x[b + 1].qs), bytes_pair(y[b].qs, y[b + 1].qs), eight);
      const __m512i p1 =
          dot_offset(nibbles_pair(x[b + 2].qs, x[b + 3].qs), bytes_pair(y[b + 2].qs, y[b + 3].qs), eight);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), pair_scale(s, k), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), pair_scale(s, k + 1), acc1);
    }
  }
  float sum = hsum512(_mm512_add_ps(acc0, acc1));
  if (i < nb) sum += avx2::vec_dot_q4_0_q8_0((nb - i) * kQK, x + i, y + i);
  return sum;
}

float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  const int64_t nb = n / kQK;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc_min = _mm512_setzero_ps();  // odd lanes: m_w * s_a per block
  int64_t i = 0;
  for (; i + kGroup <= nb; i += kGroup) {
    // Lanes 2b: d_w * d_a; lanes 2b+1: m_w * s_a.
    const __m512 s = _mm512_mul_ps(block_halves16<BlockQ4_1, kQ4_1DM>(x + i), block_halves16<BlockQ8_1, kQ8_1DS>(y + i));
    acc_min = _mm512_mask_add_ps(acc_min, 0xAAAA, acc_min, s);
    for (int k = 0; k < 4; k += 2) {
      const int64_t b = i + 2 * k;
      const __m512i z = _mm512_setzero_si512();
      const __m512i p0 = _mm512_dpbusd_epi32(z, nibbles_pair(x[b].qs, x[b + 1].qs), bytes_pair(y[b].qs, y[b + 1].qs));
      const __m512i p1 =
          _mm512_dpbusd_epi32(z, nibbles_pair(x[b + 2].qs, x[b + 3].qs), bytes_pair(y[b + 2].qs, y[b + 3].qs));
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), pair_scale_strided(s, k, 2), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), pair_scale_strided(s, k + 1, 2), acc1);
    }
  }
  float sum = hsum512(_mm512_add_ps(_mm512_add_ps(acc0, acc1), acc_min));
  if (i < nb) sum += avx2::vec_dot_q4_1_q8_1((nb - i) * kQK, x + i, y + i);
  return sum;
}

float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  const __m512i sixteen = _mm512_set1_epi8(16);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kGroup <= nb; i += kGroup) {
    const __m512 s = _mm512_castps256_ps512(
        _mm256_mul_ps(block_halves8<BlockQ5_0, kQ5_0D>(x + i), block_halves8<BlockQ8_0, kQ8_0D>(y + i)));
    for (int k = 0; k < 4; ++k) {
      const int64_t b = i + 2 * k;
      __m512i q = nibbles_pair(x[b].qs, x[b + 1].qs);
      q = _mm512_mask_add_epi8(q, fifth_bits_pair(x[b].qh, x[b + 1].qh), q, sixteen);
      const __m512i p = dot_offset(q, bytes_pair(y[b].qs, y[b + 1].qs), sixteen);
      if (k % 2 == 0)
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(s, k), acc0);
      else
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(s, k), acc1);
    }
  }
  float sum = hsum512(_mm512_add_ps(acc0, acc1));
  if (i < nb) sum += avx2::vec_dot_q5_0_q8_0((nb - i) * kQK, x + i, y + i);
  return sum;
}

float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  const int64_t nb = n / kQK;
  const __m512i sixteen = _mm512_set1_epi8(16);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc_min = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kGroup <= nb; i += kGroup) {
    const __m512 s = _mm512_mul_ps(block_halves16<BlockQ5_1, kQ5_1DM>(x + i), block_halves16<BlockQ8_1, kQ8_1DS>(y + i));
    acc_min = _mm512_mask_add_ps(acc_min, 0xAAAA, acc_min, s);
    for (int k = 0; k < 4; ++k) {
      const int64_t b = i + 2 * k;
      __m512i q = nibbles_pair(x[b].qs, x[b + 1].qs);
      q = _mm512_mask_add_epi8(q, fifth_bits_pair(x[b].qh, x[b + 1].qh), q, sixteen);
      const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, bytes_pair(y[b].qs, y[b + 1].qs));
      if (k % 2 == 0)
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale_strided(s, k, 2), acc0);
      else
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale_strided(s, k, 2), acc1);
    }
  }
  float sum = hsum512(_mm512_add_ps(_mm512_add_ps(acc0, acc1), acc_min));
  if (i < nb) sum += avx2::vec_dot_q5_1_q8_1((nb - i) * kQK, x + i, y + i);
  return sum;
}

float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kGroup <= nb; i += kGroup) {
    const __m512 s = _mm512_castps256_ps512(
        _mm256_mul_ps(block_halves8<BlockQ8_0, kQ8_0D>(x + i), block_halves8<BlockQ8_0, kQ8_0D>(y + i)));
    for (int k = 0; k < 4; ++k) {
      const int64_t b = i + 2 * k;
      const __m512i xv = bytes_pair(x[b].qs, x[b + 1].qs);
      const __m512i yv = bytes_pair(y[b].qs, y[b + 1].qs);
      // Signed x signed through the unsigned slot: |x| times y carrying x's sign.
      const __m512i sy = _mm512_mask_sub_epi8(yv, _mm512_movepi8_mask(xv), _mm512_setzero_si512(), yv);
      const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(xv), sy);
      if (k % 2 == 0)
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(s, k), acc0);
      else
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(s, k), acc1);
    }
  }
  float sum = hsum512(_mm512_add_ps(acc0, acc1));
  if (i < nb) sum += avx2::vec_dot_q8_0_q8_0((nb - i) * kQK, x + i, y + i);
  return sum;
}

// ---- float types (F16 and BF16: float_gemm_avx512.cpp) ----

float vec_dot_f32_f32(int64_t n, const void* w, const void* a) {
  return dot_f32(n, static_cast<const float*>(w), static_cast<const float*>(a));
}

}  // namespace kestrel::kernels::avx512
