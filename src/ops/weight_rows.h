#pragma once
// A weight row's stored bytes, copied out without touching a file mapping.
#include <cstdint>
#include <span>

#include "ops/weight.h"

namespace kestrel {

// dst = row `row` of `w` as stored (w.row_stride bytes; dst must be that
// long). A row of a file-mapped weight is read with pread (MappedFile::read):
// the weight's pages may have been dropped once its panels were packed, and a
// read through the mapping would make far more than the row resident again.
void copy_row_bytes(const Weight& w, int64_t row, std::span<uint8_t> dst);

}  // namespace kestrel
