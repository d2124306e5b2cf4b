#pragma once
// Helpers of the TEAL layout tests: a weight of random blocks, its
// input-major copy, the layout read back element by element (plain code,
// independent of the kernels), and a decode step's kept inputs.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/sparse_columns.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {

// A weight [rows, cols] of random blocks (kernel_test_util.h), GGUF rows.
struct GgufWeight {
  DType type;
  int64_t rows, cols;
  size_t row_stride;
  std::vector<uint8_t> data;
  const uint8_t* row(int64_t r) const { return data.data() + static_cast<size_t>(r) * row_stride; }
};

inline GgufWeight random_weight(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  // Rows are whole blocks, so one long row of random blocks is the matrix.
  return {type, rows, cols, row_bytes(type, cols), random_blocks(type, rows * cols, seed)};
}

// Row r as the scalar dequantizer gives it.
inline std::vector<float> dequantized_row(const GgufWeight& w, int64_t r) {
  std::vector<float> out(static_cast<size_t>(w.cols));
  quant_kernels(w.type, Isa::Scalar).dequantize_row(w.row(r), out.data(), w.cols);
  return out;
}

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};

// The input-major copy, built over all chunks in `pieces` calls (chunks are
// independent: the result must not depend on the split).
struct Columns {
  ColumnLayout layout;
  std::unique_ptr<uint8_t, AlignedFree> data;

  explicit Columns(const GgufWeight& w, int pieces = 1) : layout(column_layout(w.type, w.rows, w.cols)) {
    const size_t bytes = (layout.bytes() + 63) / 64 * 64 + 64;
    data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
    std::memset(data.get(), 0xA5, bytes);  // build_columns must write every byte
    const int64_t chunks = layout.chunks();
    for (int p = 0; p < pieces; ++p)
      build_columns(w.type, w.data.data(), w.row_stride, layout, chunks * p / pieces, chunks * (p + 1) / pieces,
                    data.get());
  }

  const uint8_t* group_start(int64_t r, int64_t j) const {
    return data.get() + static_cast<size_t>(r / kColumnChunkRows) * layout.chunk_bytes() +
           static_cast<size_t>(j / layout.group) * layout.group_bytes();
  }
  float s(int64_t r, int64_t j) const { return half_at(group_start(r, j), r % kColumnChunkRows); }
  float m(int64_t r, int64_t j) const { return half_at(group_start(r, j), kColumnChunkRows + r % kColumnChunkRows); }
  int v(int64_t r, int64_t j) const {
    const uint8_t* col =
        group_start(r, j) + layout.scale_bytes() + static_cast<size_t>(j % layout.group) * layout.column_bytes();
    const int64_t k = r % kColumnChunkRows;
    if (layout.codes == ColumnCodes::Int8) return static_cast<int8_t>(col[k]);
    return k < 64 ? col[k] & 0xF : col[k - 64] >> 4;
  }

 private:
  static float half_at(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return fp16_to_f32(h);
  }
};

// A decode step's kept inputs, grouped as the kernels want them.
struct Kept {
  std::vector<int32_t> index, group_begin;
  std::vector<float> value, group_sum;
  std::vector<float> dense;  // [cols]: the kept values, 0 elsewhere

  ActiveInputs inputs() const { return {index.data(), value.data(), group_begin.data(), group_sum.data()}; }
};

// `count` inputs of [0, cols) chosen at random, N(0, 1) values.
inline Kept random_kept(int64_t cols, int group, int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> all(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) all[static_cast<size_t>(j)] = static_cast<int32_t>(j);
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<bool> keep(static_cast<size_t>(cols), false);
  for (int64_t i = 0; i < count; ++i) keep[static_cast<size_t>(all[static_cast<size_t>(i)])] = true;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Kept k;
  k.dense.assign(static_cast<size_t>(cols), 0.0f);
  const int64_t groups = cols / group;
  for (int64_t g = 0; g < groups; ++g) {
    k.group_begin.push_back(static_cast<int32_t>(k.index.size()));
    float sum = 0.0f;
    for (int64_t j = g * group; j < (g + 1) * group; ++j) {
      if (!keep[static_cast<size_t>(j)]) continue;
      const float x = normal(rng);
      k.index.push_back(static_cast<int32_t>(j));
      k.value.push_back(x);
      k.dense[static_cast<size_t>(j)] = x;
      sum += x;
    }
    k.group_sum.push_back(sum);
  }
  k.group_begin.push_back(static_cast<int32_t>(k.index.size()));
  return k;
}

}  // namespace kestrel::kernels::test
