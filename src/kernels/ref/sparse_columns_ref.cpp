// Scalar twins of TEAL's sparse kernels (kernels/sparse_columns.h), in the
// operation order every SIMD version keeps (kernels/sparse_columns_isa.h):
// std::fma where they use an FMA, so all give the same bits.
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/sparse_columns.h"
#include "kernels/sparse_columns_isa.h"

namespace kestrel::kernels::ref {
namespace {

constexpr int kRows = static_cast<int>(kColumnChunkRows);

// Row k's code in one column of one chunk.
template <ColumnCodes C>
float code(const uint8_t* col, int k) {
  if constexpr (C == ColumnCodes::Nibble)
    return static_cast<float>(k < 64 ? col[k] & 0xF : col[k - 64] >> 4);
  else
    return static_cast<float>(static_cast<int8_t>(col[k]));
}

// per_chunk(chunk, yc) for chunks [chunk_begin, chunk_end), with yc (the
// chunk's 128 outputs) zeroed before; then the rows that exist to y.
template <typename PerChunk>
void over_chunks(const uint8_t* columns, const ColumnLayout& layout, int64_t chunk_begin, int64_t chunk_end, float* y,
                 PerChunk&& per_chunk) {
  float yc[kRows];
  for (int64_t c = chunk_begin; c < chunk_end; ++c) {
    for (float& v : yc) v = 0.0f;
    per_chunk(columns + static_cast<size_t>(c) * layout.chunk_bytes(), yc);
    const int64_t r0 = c * kColumnChunkRows;
    const int64_t n = layout.rows - r0 < kRows ? layout.rows - r0 : kRows;
    std::memcpy(y + r0, yc, static_cast<size_t>(n) * sizeof(float));
  }
}

template <ColumnCodes C>
void sparse_gemv(const uint8_t* columns, const ColumnLayout& layout, const ActiveInputs& in, int64_t chunk_begin,
                 int64_t chunk_end, float* y) {
  const size_t cb = layout.column_bytes(), gb = layout.group_bytes();
  float acc[kRows];
  over_chunks(columns, layout, chunk_begin, chunk_end, y, [&](const uint8_t* chunk, float* yc) {
    for (int64_t g = 0; g < layout.groups(); ++g) {
      const int32_t begin = in.group_begin[g], end = in.group_begin[g + 1];
      if (begin == end) continue;  // nothing kept: the group's scales are not read
      const uint8_t* grp = chunk + static_cast<size_t>(g) * gb;
      const uint8_t* codes = grp + layout.scale_bytes();
      for (float& a : acc) a = 0.0f;
      for (int32_t i = begin; i < end; ++i) {
        const uint8_t* col = codes + static_cast<size_t>(in.index[i] - g * layout.group) * cb;
        const float x = in.value[i];
        for (int k = 0; k < kRows; ++k) acc[k] = std::fma(x, code<C>(col, k), acc[k]);
      }
      uint16_t s[kRows], m[kRows];
      std::memcpy(s, grp, sizeof(s));
      std::memcpy(m, grp + sizeof(s), sizeof(m));
      const float sum = in.group_sum[g];
      for (int k = 0; k < kRows; ++k) {
        yc[k] = std::fma(fp16_to_f32(s[k]), acc[k], yc[k]);
        yc[k] = std::fma(-fp16_to_f32(m[k]), sum, yc[k]);
      }
    }
  });
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

void sparse_gemv_nibble_pairs(const uint8_t* columns, const ColumnLayout& layout, const PairedInputs& in,
                              int64_t chunk_begin, int64_t chunk_end, float* y) {
  const size_t gb = layout.group_bytes();
  int32_t acc[kRows];
  over_chunks(columns, layout, chunk_begin, chunk_end, y, [&](const uint8_t* chunk, float* yc) {
    for (int64_t g = 0; g < layout.groups(); ++g) {
      const int32_t begin = in.group_begin[g], end = in.group_begin[g + 1];
      if (begin == end) continue;
      for (int32_t& a : acc) a = 0;
      for (int32_t p = begin; p < end; ++p) {
        const InputPair& pr = in.pair[p];
        const int xa = static_cast<int8_t>(pr.codes & 0xFF), xb = static_cast<int8_t>(pr.codes >> 8);
        for (int k = 0; k < kRows; ++k)
          acc[k] += static_cast<int>(code<ColumnCodes::Nibble>(chunk + pr.a, k)) * xa +
                    static_cast<int>(code<ColumnCodes::Nibble>(chunk + pr.b, k)) * xb;
      }
      const uint8_t* grp = chunk + static_cast<size_t>(g) * gb;
      uint16_t s[kRows], m[kRows];
      std::memcpy(s, grp, sizeof(s));
      std::memcpy(m, grp + sizeof(s), sizeof(m));
      const float d = in.group_scale[g], sum = in.group_sum[g];
      for (int k = 0; k < kRows; ++k) {
        yc[k] = std::fma(fp16_to_f32(s[k]) * d, static_cast<float>(acc[k]), yc[k]);
        yc[k] = std::fma(-fp16_to_f32(m[k]), sum, yc[k]);
      }
    }
  });
}

int64_t select_inputs(const float* x, int64_t n, float threshold, int32_t* index, float* value) {
  int64_t kept = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (!(std::fabs(x[j]) > threshold)) continue;
    index[kept] = static_cast<int32_t>(j);
    value[kept++] = x[j];
  }
  return kept;
}

}  // namespace kestrel::kernels::ref
