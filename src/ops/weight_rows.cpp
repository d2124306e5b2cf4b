#include "ops/weight_rows.h"

#include <cstring>

#include "core/error.h"
#include "platform/mmap.h"

namespace kestrel {

void copy_row_bytes(const Weight& w, int64_t first, std::span<uint8_t> dst) {
  if (dst.empty() || dst.size() % w.row_stride != 0)
    fail("weight ", w.name, ": a row is ", w.row_stride, " bytes, the destination ", dst.size());
  const auto n = static_cast<int64_t>(dst.size() / w.row_stride);
  if (first < 0 || first + n > w.rows)
    fail("weight ", w.name, ": rows [", first, ", ", first + n, ") are outside its ", w.rows, " rows");
  if (!w.mapped()) {
    std::memcpy(dst.data(), w.row(first), dst.size());
    return;
  }
  w.file->read(static_cast<size_t>(w.row(first) - w.file->data()), dst);
}

}  // namespace kestrel
