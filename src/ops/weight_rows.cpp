#include "ops/weight_rows.h"

#include <cstring>

#include "core/error.h"
#include "platform/mmap.h"

namespace kestrel {

void copy_row_bytes(const Weight& w, int64_t row, std::span<uint8_t> dst) {
  if (row < 0 || row >= w.rows) fail("weight ", w.name, ": row ", row, " is outside its ", w.rows, " rows");
  if (dst.size() != w.row_stride)
    fail("weight ", w.name, ": a row is ", w.row_stride, " bytes, the destination ", dst.size());
  if (!w.mapped()) {
    std::memcpy(dst.data(), w.row(row), dst.size());
    return;
  }
  w.file->read(static_cast<size_t>(w.row(row) - w.file->data()), dst);
}

}  // namespace kestrel
