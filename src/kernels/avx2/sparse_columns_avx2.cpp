// AVX2 TEAL kernels (kernels/sparse_columns.h). 16 ymm registers hold 8
// accumulators of 8 rows plus the broadcast value and temporaries: 64 rows at
// a time. So a chunk is two 64-row halves, one per nibble half for Nibble
// codes (low nibbles: rows 0..63, high: 64..127), run one after the other on
// each group, the second reading the group's columns from L1; the chunk's
// outputs wait in a 128-float buffer. Columns and scales are prefetched 32
// lines ahead (sparse_columns-inl.h). Same operations per row as the scalar
// twin (kernels/sparse_columns_isa.h), so the same bits.
#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx2/sparse_columns-inl.h"
#include "kernels/sparse_columns.h"
#include "kernels/sparse_columns_isa.h"

namespace kestrel::kernels::avx2 {
namespace {

constexpr int kHalf = kChunkRows / 2;
constexpr int kVecs = kHalf / 8;  // accumulators per half

// acc[k] += x * codes of rows 64h + 8k .. 64h + 8k + 7 of one column.
template <ColumnCodes C, int H>
inline void add_column(const uint8_t* col, __m256 x, __m256* acc) {
  for (int k = 0; k < kVecs; ++k) {
    __m256i q;
    if constexpr (C == ColumnCodes::Nibble) {
      q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(col + 8 * k)));
      q = H == 0 ? _mm256_and_si256(q, _mm256_set1_epi32(0xF)) : _mm256_srli_epi32(q, 4);
    } else {
      q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(col + kHalf * H + 8 * k)));
    }
    acc[k] = _mm256_fmadd_ps(x, _mm256_cvtepi32_ps(q), acc[k]);
  }
}

struct GroupArgs {
  const uint8_t* grp;
  const uint8_t* chunk;
  const uint8_t* next_chunk;
  int32_t first, begin, end;  // the group's first input; its kept range
  float sum;                  // of the kept values
};

// Half H of one group: yc[64H ..] += s * acc - m * sum. The first half
// prefetches (the second reads the same lines, from L1).
template <ColumnCodes C, int H>
inline void group_half(const ColumnGeometry& geo, const ActiveInputs& in, const GroupArgs& a,
                       ColumnPrefetcher& prefetch, float* yc) {
  __m256 acc[kVecs];
  for (__m256& v : acc) v = _mm256_setzero_ps();
  const uint8_t* codes = a.grp + kScaleBytes;
  for (int32_t i = a.begin; i < a.end; ++i) {
    if (H == 0) prefetch.ahead(a.chunk, a.next_chunk, i);
    add_column<C, H>(codes + static_cast<size_t>(in.index[i] - a.first) * geo.column_bytes, _mm256_set1_ps(in.value[i]),
                     acc);
  }
  const auto* s = reinterpret_cast<const __m128i*>(a.grp) + kVecs * H;
  const auto* m = reinterpret_cast<const __m128i*>(a.grp + 2 * kChunkRows) + kVecs * H;
  const __m256 vsum = _mm256_set1_ps(a.sum);
  float* yh = yc + kHalf * H;
  for (int k = 0; k < kVecs; ++k) {
    __m256 y = _mm256_load_ps(yh + 8 * k);
    y = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_load_si128(s + k)), acc[k], y);
    y = _mm256_fnmadd_ps(_mm256_cvtph_ps(_mm_load_si128(m + k)), vsum, y);
    _mm256_store_ps(yh + 8 * k, y);
  }
}

// per_chunk(chunk, next_chunk, yc) for chunks [chunk_begin, chunk_end), with
// yc (the chunk's 128 outputs) zeroed before; then the rows that exist to y.
template <typename PerChunk>
inline void over_chunks(const ColumnLayout& layout, size_t chunk_bytes, const uint8_t* columns, int64_t chunk_begin,
                        int64_t chunk_end, float* y, PerChunk&& per_chunk) {
  alignas(32) float yc[kChunkRows];
  for (int64_t c = chunk_begin; c < chunk_end; ++c) {
    const uint8_t* chunk = columns + static_cast<size_t>(c) * chunk_bytes;
    const uint8_t* next_chunk = c + 1 < chunk_end ? chunk + chunk_bytes : nullptr;
    for (int k = 0; k < kChunkRows; k += 8) _mm256_store_ps(yc + k, _mm256_setzero_ps());
    per_chunk(chunk, next_chunk, yc);
    const int64_t r0 = c * kChunkRows;
    const int64_t n = layout.rows - r0 < kChunkRows ? layout.rows - r0 : kChunkRows;
    for (int64_t k = 0; k < n; ++k) y[r0 + k] = yc[k];
  }
}

template <ColumnCodes C>
void sparse_gemv(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                 int64_t chunk_end, float* y) {
  const ColumnGeometry geo(layout);
  ColumnPrefetcher prefetch(geo, in);
  over_chunks(layout, geo.chunk_bytes, columns, chunk_begin, chunk_end, y,
              [&](const uint8_t* chunk, const uint8_t* next_chunk, float* yc) {
                for (int64_t g = 0; g < geo.groups; ++g) {
                  const int32_t begin = in.group_begin[g], end = in.group_begin[g + 1];
                  if (begin == end) continue;  // nothing kept: the group's scales are not read
                  const GroupArgs a{chunk + static_cast<size_t>(g) * geo.group_bytes,
                                    chunk,
                                    next_chunk,
                                    static_cast<int32_t>(g * geo.group),
                                    begin,
                                    end,
                                    in.group_sum[g]};
                  group_half<C, 0>(geo, in, a, prefetch, yc);
                  group_half<C, 1>(geo, in, a, prefetch, yc);
                }
              });
}

// The paired kernel (7-bit activation codes, kernels/sparse_columns.h). Pass
// H of a group reads bytes 32H .. 32H + 31 of its columns: low nibbles are
// rows 32H + 0..31, high nibbles rows 64 + 32H + 0..31. Interleaving the two
// columns' bytes (vpunpck{l,h}bw, within each 128-bit lane) puts one row's two
// codes side by side, so vpmaddubsw with the pair's codes broadcast gives
// that row's two products summed, in int16: acc[0] rows 32H + 0..7 | 16..23,
// acc[1] rows 32H + 8..15 | 24..31, acc[2] and acc[3] the same 64 rows on.
// Pass 0 prefetches 16 pairs (32 lines) ahead; pass 1 reads the group from L1.
constexpr int kPairsAhead = kPrefetchLines / 2;

class PairPrefetcher {
 public:
  PairPrefetcher(const PairedInputs& in, int64_t groups, size_t group_bytes)
      : pair_(in.pair), n_(in.group_begin[groups]), group_bytes_(group_bytes) {}

  void ahead(const uint8_t* chunk, const uint8_t* next_chunk, int32_t p) {
    int64_t q;
    const uint8_t* base;
    if (!item_ahead(p, kPairsAhead, n_, chunk, next_chunk, q, base)) return;
    const InputPair& pr = pair_[q];
    prefetch_line(base + pr.a);
    prefetch_line(base + pr.b);
    if (pr.group == last_group_ && base == last_base_) return;
    const uint8_t* scales = base + static_cast<size_t>(pr.group) * group_bytes_;
    for (size_t line = 0; line < kScaleBytes; line += 64) prefetch_line(scales + line);
    last_group_ = pr.group;
    last_base_ = base;
  }

 private:
  const InputPair* pair_;
  int32_t n_;
  size_t group_bytes_;
  int32_t last_group_ = -1;
  const uint8_t* last_base_ = nullptr;
};

template <int H>
inline void pair_pass(const uint8_t* chunk, const uint8_t* next_chunk, const PairedInputs& in, int32_t begin,
                      int32_t end, PairPrefetcher& prefetch, __m256i* acc) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int32_t p = begin; p < end; ++p) {
    if (H == 0) prefetch.ahead(chunk, next_chunk, p);
    const InputPair& pr = in.pair[p];
    const __m256i x = _mm256_set1_epi16(static_cast<int16_t>(pr.codes));
    const __m256i a = _mm256_load_si256(reinterpret_cast<const __m256i*>(chunk + pr.a + 32 * H));
    const __m256i b = _mm256_load_si256(reinterpret_cast<const __m256i*>(chunk + pr.b + 32 * H));
    const __m256i al = _mm256_and_si256(a, low), bl = _mm256_and_si256(b, low);
    const __m256i ah = _mm256_and_si256(_mm256_srli_epi16(a, 4), low);
    const __m256i bh = _mm256_and_si256(_mm256_srli_epi16(b, 4), low);
    a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(_mm256_unpacklo_epi8(al, bl), x));
    a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(_mm256_unpackhi_epi8(al, bl), x));
    a2 = _mm256_add_epi16(a2, _mm256_maddubs_epi16(_mm256_unpacklo_epi8(ah, bh), x));
    a3 = _mm256_add_epi16(a3, _mm256_maddubs_epi16(_mm256_unpackhi_epi8(ah, bh), x));
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

// yc[row .. row + 7] = fma(s * d, float(sums), yc) then fma(-m, sum, that).
inline void add_eight_rows(const uint8_t* grp, int row, __m128i sums16, __m256 d, __m256 sum, float* yc) {
  const __m256 s = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(grp + 2 * row)));
  const __m256 m = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(grp + 2 * (kChunkRows + row))));
  __m256 y =
      _mm256_fmadd_ps(_mm256_mul_ps(s, d), _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(sums16)), _mm256_load_ps(yc + row));
  y = _mm256_fnmadd_ps(m, sum, y);
  _mm256_store_ps(yc + row, y);
}

}  // namespace

void sparse_gemv_nibble_pairs(const uint8_t* columns, const ColumnLayout& layout, const PairedInputs& in,
                              int64_t chunk_begin, int64_t chunk_end, float* y) {
  const ColumnGeometry geo(layout);
  PairPrefetcher prefetch(in, geo.groups, geo.group_bytes);
  over_chunks(layout, geo.chunk_bytes, columns, chunk_begin, chunk_end, y,
              [&](const uint8_t* chunk, const uint8_t* next_chunk, float* yc) {
                for (int64_t g = 0; g < geo.groups; ++g) {
                  const int32_t begin = in.group_begin[g], end = in.group_begin[g + 1];
                  if (begin == end) continue;
                  __m256i acc[8];
                  pair_pass<0>(chunk, next_chunk, in, begin, end, prefetch, acc);
                  pair_pass<1>(chunk, next_chunk, in, begin, end, prefetch, acc + 4);
                  const uint8_t* grp = chunk + static_cast<size_t>(g) * geo.group_bytes;
                  const __m256 d = _mm256_set1_ps(in.group_scale[g]), sum = _mm256_set1_ps(in.group_sum[g]);
                  for (int h = 0; h < 2; ++h)
                    for (int k = 0; k < 4; ++k) {
                      // acc[4h + k]: rows (k >= 2 ? 64 : 0) + 32h + (k & 1) * 8 + {0..7 | 16..23}
                      const int row = (k >= 2 ? 64 : 0) + 32 * h + (k & 1) * 8;
                      const __m256i v = acc[4 * h + k];
                      add_eight_rows(grp, row, _mm256_castsi256_si128(v), d, sum, yc);
                      add_eight_rows(grp, row + 16, _mm256_extracti128_si256(v, 1), d, sum, yc);
                    }
                }
              });
}

namespace {

// For each 8-bit mask, the positions of its set bits packed to the front, one
// byte each: the vpermps control that moves the kept lanes together.
struct CompressTable {
  uint64_t control[256];
};

constexpr CompressTable make_compress_table() {
  CompressTable t{};
  for (int mask = 0; mask < 256; ++mask) {
    uint64_t packed = 0;
    int out = 0;
    for (int lane = 0; lane < 8; ++lane)
      if (mask & (1 << lane)) packed |= static_cast<uint64_t>(lane) << (8 * out++);
    t.control[mask] = packed;
  }
  return t;
}

constexpr CompressTable kCompress = make_compress_table();

}  // namespace

void sparse_gemv_nibble(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                        int64_t chunk_end, float* y) {
  sparse_gemv<ColumnCodes::Nibble>(columns, layout, in, chunk_begin, chunk_end, y);
}

void sparse_gemv_int8(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                      int64_t chunk_end, float* y) {
  sparse_gemv<ColumnCodes::Int8>(columns, layout, in, chunk_begin, chunk_end, y);
}

// 8 inputs per step: compare, movemask, and one vpermps from the table packs
// the kept values and indices to the front; all 8 lanes are stored (kept <= i,
// so they stay inside index[0, n) and value[0, n)). The tail is scalar.
int64_t select_inputs(const float* x, int64_t n, float threshold, int32_t* index, float* value) {
  const __m256 thr = _mm256_set1_ps(threshold);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t kept = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const int keep = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, abs_mask), thr, _CMP_GT_OQ));
    if (keep == 0) continue;
    const __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(kCompress.control[keep])));
    const __m256i idx = _mm256_add_epi32(iota, _mm256_set1_epi32(static_cast<int32_t>(i)));
    _mm256_storeu_ps(value + kept, _mm256_permutevar8x32_ps(v, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(index + kept), _mm256_permutevar8x32_epi32(idx, perm));
    kept += _mm_popcnt_u32(static_cast<unsigned>(keep));
  }
  for (; i < n; ++i) {
    const float v = x[i];
    if (!(_mm_cvtss_f32(_mm_and_ps(_mm_set_ss(v), _mm256_castps256_ps128(abs_mask))) > threshold)) continue;
    index[kept] = static_cast<int32_t>(i);
    value[kept++] = v;
  }
  return kept;
}

}  // namespace kestrel::kernels::avx2
