#include "ops/embedding.h"

#include <vector>

#include "ops/weight_rows.h"

namespace kestrel {

void embed_row(const Weight& table, int64_t row, const kernels::QuantKernels& kern, float* out) {
  if (!table.mapped()) return kern.dequantize_row(table.row(row), out, table.cols);
  thread_local std::vector<uint8_t> bytes;  // every token of every step: no allocation
  bytes.resize(table.row_stride);
  copy_row_bytes(table, row, bytes);
  kern.dequantize_row(bytes.data(), out, table.cols);
}

}  // namespace kestrel
