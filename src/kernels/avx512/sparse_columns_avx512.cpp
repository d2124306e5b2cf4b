// AVX-512 TEAL kernels (kernels/sparse_columns.h). A chunk's 128 rows are 8
// zmm accumulators of 16 rows; with the chunk's 8 running outputs that is 16
// of the 32 registers, so y stays in registers across all groups. Per kept
// input: broadcast its value, widen its codes to 32-bit lanes (vpmovzxbd /
// vpmovsxbd), convert and FMA. Per group: y += s * acc - m * group_sum, s and
// m converted from F16 (vcvtph2ps). Columns and scales are prefetched 32
// lines ahead (avx2/sparse_columns-inl.h). Same operations per row as the
// scalar twin (kernels/sparse_columns_isa.h), so the same bits.
#include "kernels/avx2/sparse_columns-inl.h"
#include "kernels/avx512/avx512-inl.h"
#include "kernels/sparse_columns.h"
#include "kernels/sparse_columns_isa.h"

namespace kestrel::kernels::avx512 {
namespace {

constexpr int kVecs = kChunkRows / 16;  // accumulators per chunk

// acc[k] += x * codes of rows 16k .. 16k+15 of one column.
template <ColumnCodes C>
inline void add_column(const uint8_t* col, __m512 x, __m512* acc) {
  if constexpr (C == ColumnCodes::Nibble) {
    // Byte i: row i (low nibble), row i + 64 (high nibble).
    const __m512i low = _mm512_set1_epi32(0xF);
    for (int k = 0; k < kVecs / 2; ++k) {
      const __m512i q = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(col + 16 * k)));
      acc[k] = _mm512_fmadd_ps(x, _mm512_cvtepi32_ps(_mm512_and_si512(q, low)), acc[k]);
      acc[k + 4] = _mm512_fmadd_ps(x, _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4)), acc[k + 4]);
    }
  } else {
    for (int k = 0; k < kVecs; ++k) {
      const __m512i q = _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(col + 16 * k)));
      acc[k] = _mm512_fmadd_ps(x, _mm512_cvtepi32_ps(q), acc[k]);
    }
  }
}

template <ColumnCodes C>
void sparse_gemv(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                 int64_t chunk_end, float* y) {
  const ColumnGeometry geo(layout);
  ColumnPrefetcher prefetch(geo, in);
  for (int64_t c = chunk_begin; c < chunk_end; ++c) {
    const uint8_t* chunk = columns + static_cast<size_t>(c) * geo.chunk_bytes;
    const uint8_t* next_chunk = c + 1 < chunk_end ? chunk + geo.chunk_bytes : nullptr;
    __m512 yv[kVecs];
    for (__m512& v : yv) v = _mm512_setzero_ps();
    for (int64_t g = 0; g < geo.groups; ++g) {
      const int32_t begin = in.group_begin[g], end = in.group_begin[g + 1];
      if (begin == end) continue;  // nothing kept: the group's scales are not read
      const uint8_t* grp = chunk + static_cast<size_t>(g) * geo.group_bytes;
      const uint8_t* codes = grp + kScaleBytes;
      const int32_t first = static_cast<int32_t>(g * geo.group);  // the group's first input
      __m512 acc[kVecs];
      for (__m512& a : acc) a = _mm512_setzero_ps();
      for (int32_t i = begin; i < end; ++i) {
        prefetch.ahead(chunk, next_chunk, i);
        add_column<C>(codes + static_cast<size_t>(in.index[i] - first) * geo.column_bytes, _mm512_set1_ps(in.value[i]),
                      acc);
      }
      const auto* s = reinterpret_cast<const __m256i*>(grp);
      const auto* m = reinterpret_cast<const __m256i*>(grp + 2 * kChunkRows);
      const __m512 sum = _mm512_set1_ps(in.group_sum[g]);
      for (int k = 0; k < kVecs; ++k) {
        yv[k] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_load_si256(s + k)), acc[k], yv[k]);
        yv[k] = _mm512_fnmadd_ps(_mm512_cvtph_ps(_mm256_load_si256(m + k)), sum, yv[k]);
      }
    }
    const int64_t r0 = c * kChunkRows;
    const int64_t n = layout.rows - r0;
    for (int k = 0; k < kVecs; ++k) {
      const int64_t left = n - 16 * k;
      if (left >= 16)
        _mm512_storeu_ps(y + r0 + 16 * k, yv[k]);
      else if (left > 0)
        _mm512_mask_storeu_ps(y + r0 + 16 * k, static_cast<__mmask16>((1u << left) - 1), yv[k]);
    }
  }
}

}  // namespace

void sparse_gemv_nibble(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                        int64_t chunk_end, float* y) {
  sparse_gemv<ColumnCodes::Nibble>(columns, layout, in, chunk_begin, chunk_end, y);
}

void sparse_gemv_int8(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                      int64_t chunk_end, float* y) {
  sparse_gemv<ColumnCodes::Int8>(columns, layout, in, chunk_begin, chunk_end, y);
}

// 16 inputs per step: compare |x| > threshold (vcmpps), compress the kept
// values and their indices to the front (vcompressps / vpcompressd) and store
// them whole: kept <= i, so the 16 lanes stay inside index[0, n) and value[0, n).
int64_t select_inputs(const float* x, int64_t n, float threshold, int32_t* index, float* value) {
  const __m512 thr = _mm512_set1_ps(threshold);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t kept = 0, i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __mmask16 keep = _mm512_cmp_ps_mask(_mm512_abs_ps(v), thr, _CMP_GT_OQ);
    const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(i)));
    _mm512_storeu_ps(value + kept, _mm512_maskz_compress_ps(keep, v));
    _mm512_storeu_si512(index + kept, _mm512_maskz_compress_epi32(keep, idx));
    kept += _mm_popcnt_u32(keep);
  }
  if (i < n) {  // tail: masked, and only the kept lanes stored
    const __mmask16 live = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(live, x + i);
    const __mmask16 keep = _mm512_mask_cmp_ps_mask(live, _mm512_abs_ps(v), thr, _CMP_GT_OQ);
    const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(i)));
    const int count = _mm_popcnt_u32(keep);
    const __mmask16 out = static_cast<__mmask16>((1u << count) - 1);
    _mm512_mask_storeu_ps(value + kept, out, _mm512_maskz_compress_ps(keep, v));
    _mm512_mask_storeu_epi32(index + kept, out, _mm512_maskz_compress_epi32(keep, idx));
    kept += count;
  }
  return kept;
}

}  // namespace kestrel::kernels::avx512
