#pragma once
// A read-only 2-D weight matrix as GGUF stores it: `rows` rows of `cols`
// elements each, rows contiguous (ggml ne[0] = cols, ne[1] = rows).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace kestrel {

class MappedFile;

// matmul's lazily built copy of a weight in the batched kernels' panel layout
// (ops/matmul.h). Copies of a Weight share it; the data must not change after
// the first batched matmul.
class PackedWeightSlot;
std::shared_ptr<PackedWeightSlot> make_packed_weight_slot();
// The same for TEAL's input-major copy (ops/sparse_matmul.h), built only when
// a session runs with activation sparsity.
class ColumnWeightSlot;
std::shared_ptr<ColumnWeightSlot> make_column_weight_slot();

struct Weight {
  std::string name;
  DType type = DType::F32;
  int64_t cols = 0;  // ne[0]: the reduction dimension
  int64_t rows = 0;  // ne[1]: output features
  const uint8_t* data = nullptr;
  size_t row_stride = 0;  // bytes between rows
  // The read-only file mapping data lies in, else nullptr. Once matmul has its
  // packed copy it drops these pages from memory; embedding rows are read from
  // the file (ops/embedding.h), so lookups do not page them back in.
  const MappedFile* file = nullptr;
  std::shared_ptr<PackedWeightSlot> packed = make_packed_weight_slot();
  std::shared_ptr<ColumnWeightSlot> columns = make_column_weight_slot();

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_stride; }
  bool empty() const { return data == nullptr; }
  bool mapped() const { return file != nullptr; }
  size_t bytes() const { return row_stride * static_cast<size_t>(rows); }
};

}  // namespace kestrel
