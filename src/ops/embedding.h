#pragma once
// Token embeddings: one row of an embedding table dequantized to floats.
#include <cstdint>

#include "kernels/quant_kernels.h"
#include "ops/weight.h"

namespace kestrel {

// out[0, table.cols) = row `row` of `table` as floats (kern: the table type's
// kernels). A table in a file mapping is read with pread
// (MappedFile::read), not through the mapping: a tied table's pages were
// dropped once its output-head panels were packed, and a read through the
// mapping brings back far more than the row (the kernel maps the page-cache
// folio or fault-around window around it: a 512-token prompt of gemma-3-270m
// made 77 MB of its 178 MB table resident again).
void embed_row(const Weight& table, int64_t row, const kernels::QuantKernels& kern, float* out);

}  // namespace kestrel
