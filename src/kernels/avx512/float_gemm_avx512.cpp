// F16 and BF16 weights on AVX-512: vec_dot and the rows x tokens kernel
// (QuantKernels::float_gemm) in one arithmetic order, so both give the same
// bits: per (row, token), one 16-lane accumulator over steps of the format's
// width, the last step masked (zeros add nothing), one horizontal sum. The
// tiles of float_gemm give the FMA units independent chains; vec_dot alone
// (one chain) is the reference path.
//  - F16: 16 elements per step, weights widened with vcvtph2ps (exact), one
//    FMA against the activations as floats.
//  - BF16 (needs AVX512-BF16): 32 elements per step, one vdpbf16ps on the
//    weight's and the activation's bf16 pairs, nothing widened. Products of two
//    bf16 values are exact in fp32; the instruction adds the two of a pair to the
//    lane one after the other. Without AVX512-BF16 the BF16 rows use the AVX2
//    kernels (quant_kernels.cpp).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/avx512/avx512-inl.h"
#include "kernels/avx512/avx512_kernels.h"

namespace kestrel::kernels::avx512 {
namespace {

__mmask16 mask16(int64_t count) { return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1); }
__mmask32 mask32(int64_t count) { return count >= 32 ? ~__mmask32(0) : __mmask32((1u << count) - 1); }

// One format's step: Weight / Act are what a step loads (weight() from the
// weight row, act() from float_gemm's activation rows, rounded() from
// vec_dot's activation row, which is in the weight's type); Tile is what
// float_gemm's tiles read of the activations (floats for F16, bf16 bits for
// BF16), made from the float rows by tile_row().
struct F16Step {
  static constexpr int64_t kWidth = 16;
  using Weight = __m512;
  using Act = __m512;
  using Tile = float;
  static Weight weight(const uint16_t* p, int64_t left) {
    return left >= kWidth ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))
                          : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(left), p));
  }
  static Act act(const float* p, int64_t left) {
    return left >= kWidth ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask16(left), p);
  }
  static Act rounded(const uint16_t* p, int64_t left) { return weight(p, left); }
  static __m512 madd(__m512 acc, Weight w, Act a) { return _mm512_fmadd_ps(w, a, acc); }
  // float_gemm's activation row as its tiles read it: the floats themselves.
  static const Tile* tile_row(const float* src, int64_t, Tile*) { return src; }
};

struct Bf16Step {
  static constexpr int64_t kWidth = 32;
  using Weight = __m512bh;
  using Act = __m512bh;
  using Tile = uint16_t;
  static Weight weight(const uint16_t* p, int64_t left) {
    const __m512i v = left >= kWidth ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi16(mask32(left), p);
    return reinterpret_cast<const __m512bh&>(v);
  }
  static Act act(const uint16_t* p, int64_t left) { return weight(p, left); }
  static Act rounded(const uint16_t* p, int64_t left) { return weight(p, left); }
  static __m512 madd(__m512 acc, Weight w, Act a) { return _mm512_dpbf16_ps(acc, w, a); }
  // The floats hold bf16 values (FloatGemmFn's contract): their upper halves
  // are those values' bits, exactly.
  static const Tile* tile_row(const float* src, int64_t n, Tile* dst) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m512i v = _mm512_srli_epi32(_mm512_castps_si512(_mm512_loadu_ps(src + i)), 16);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(v));
    }
    for (; i < n; ++i) {
      uint32_t u;
      std::memcpy(&u, src + i, 4);
      dst[i] = static_cast<uint16_t>(u >> 16);
    }
    return dst;
  }
};

// out[r * kT + t] = the dot of weight row x[r] with token t's activations a[t].
template <class S, int kR, int kT>
inline void dot_tile(int64_t n, const uint16_t* const* x, const typename S::Tile* const* a, float* out) {
  __m512 acc[kR][kT];
  for (auto& row : acc)
    for (__m512& v : row) v = _mm512_setzero_ps();
  const auto step = [&](int64_t i, int64_t left) {
    typename S::Weight w[kR];
    for (int r = 0; r < kR; ++r) w[r] = S::weight(x[r] + i, left);
    for (int t = 0; t < kT; ++t) {
      const typename S::Act v = S::act(a[t] + i, left);
      for (int r = 0; r < kR; ++r) acc[r][t] = S::madd(acc[r][t], w[r], v);
    }
  };
  int64_t i = 0;
  for (; i + S::kWidth <= n; i += S::kWidth) step(i, S::kWidth);
  if (i < n) step(i, n - i);
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kT; ++t) out[r * kT + t] = hsum512(acc[r][t]);
}

// 4 rows x 6 tokens: 24 accumulators, 4 weight vectors and the activation
// vector within the 32 zmm.
constexpr int kTileRows = 4;
constexpr int kTileTokens = 6;

template <class S, int kR>
inline void dot_rows(int64_t n, const uint16_t* const* x, const typename S::Tile* const* a, int64_t tokens,
                     float* out) {
  switch (tokens) {
    case 6:
      return dot_tile<S, kR, 6>(n, x, a, out);
    case 5:
      return dot_tile<S, kR, 5>(n, x, a, out);
    case 4:
      return dot_tile<S, kR, 4>(n, x, a, out);
    case 3:
      return dot_tile<S, kR, 3>(n, x, a, out);
    case 2:
      return dot_tile<S, kR, 2>(n, x, a, out);
    default:
      return dot_tile<S, kR, 1>(n, x, a, out);
  }
}

template <class S>
void dot_block(int64_t n, const uint16_t* const* x, int64_t nr, const typename S::Tile* const* a, int64_t nt,
               float* out) {
  switch (nr) {
    case 4:
      return dot_rows<S, 4>(n, x, a, nt, out);
    case 3:
      return dot_rows<S, 3>(n, x, a, nt, out);
    case 2:
      return dot_rows<S, 2>(n, x, a, nt, out);
    default:
      return dot_rows<S, 1>(n, x, a, nt, out);
  }
}

const uint16_t* row_at(const void* w, size_t row_stride, int64_t r) {
  return reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * row_stride);
}

// Token tiles outside, row tiles inside (as the AVX2 kernel: a tile's
// activation rows stay in L1 while the call's rows stream from L2 once per
// token tile). One token: one row at a time, a single stream through memory.
template <class S>
void float_gemm(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens, float* y,
                int64_t y_stride) {
  // A token tile's activation rows in the tiles' type, when that is not float.
  thread_local std::vector<typename S::Tile> converted;
  if constexpr (!std::is_same_v<typename S::Tile, float>) converted.resize(static_cast<size_t>(kTileTokens * n));
  for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
    const int64_t nt = std::min<int64_t>(kTileTokens, n_tokens - t);
    const typename S::Tile* a[kTileTokens];
    for (int64_t j = 0; j < nt; ++j)
      a[j] = S::tile_row(act + (t + j) * n, n, converted.empty() ? nullptr : converted.data() + j * n);
    if (nt == 1) {
      for (int64_t r = 0; r < rows; ++r) {
        const uint16_t* x = row_at(w, row_stride, r);
        dot_tile<S, 1, 1>(n, &x, a, y + t * y_stride + r);
      }
      continue;
    }
    for (int64_t r = 0; r < rows; r += kTileRows) {
      const int64_t nr = std::min<int64_t>(kTileRows, rows - r);
      const uint16_t* x[kTileRows];
      for (int64_t j = 0; j < nr; ++j) x[j] = row_at(w, row_stride, r + j);
      float out[kTileRows * kTileTokens];
      dot_block<S>(n, x, nr, a, nt, out);
      for (int64_t i = 0; i < nr; ++i)
        for (int64_t j = 0; j < nt; ++j) y[(t + j) * y_stride + r + i] = out[i * nt + j];
    }
  }
}

template <class S>
float vec_dot_rounded(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + S::kWidth <= n; i += S::kWidth)
    acc = S::madd(acc, S::weight(x + i, S::kWidth), S::rounded(y + i, S::kWidth));
  if (i < n) acc = S::madd(acc, S::weight(x + i, n - i), S::rounded(y + i, n - i));
  return hsum512(acc);
}

}  // namespace

float vec_dot_f16_f16(int64_t n, const void* w, const void* a) { return vec_dot_rounded<F16Step>(n, w, a); }

void float_gemm_f16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                    float* y, int64_t y_stride) {
  float_gemm<F16Step>(n, w, row_stride, rows, act, n_tokens, y, y_stride);
}

float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a) { return vec_dot_rounded<Bf16Step>(n, w, a); }

void float_gemm_bf16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                     float* y, int64_t y_stride) {
  float_gemm<Bf16Step>(n, w, row_stride, rows, act, n_tokens, y, y_stride);
}

}  // namespace kestrel::kernels::avx512
