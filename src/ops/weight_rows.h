#pragma once
// A weight's stored row bytes, copied out without touching a file mapping.
#include <cstdint>
#include <span>

#include "ops/weight.h"

namespace kestrel {

// dst = rows [first, first + dst.size() / w.row_stride) of `w` as stored (dst
// a whole number of rows, at least one). Rows of a file-mapped weight are read
// with one pread (MappedFile::read): the weight's pages may have been dropped
// once its panels were packed, and a read through the mapping would make far
// more than the rows resident again.
void copy_row_bytes(const Weight& w, int64_t first, std::span<uint8_t> dst);

}  // namespace kestrel
