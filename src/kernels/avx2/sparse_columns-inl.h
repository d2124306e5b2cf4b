#pragma once
// What the AVX2 and AVX-512 TEAL kernels (kernels/sparse_columns.h) share:
// the layout's sizes and the software prefetch of the columns ahead.
// Anonymous namespace, as avx2-inl.h: each SIMD translation unit gets its own
// copy, built with its own flags.
#include <cstddef>
#include <cstdint>

#include "kernels/sparse_columns.h"

namespace kestrel::kernels {
namespace {

constexpr int kChunkRows = static_cast<int>(kColumnChunkRows);
constexpr size_t kScaleBytes = 2 * kChunkRows * 2;  // s[128], m[128] in F16

// ColumnLayout's sizes, computed here: its inline member functions must not be
// emitted from a translation unit built with SIMD flags (kernels/blocks.h).
struct ColumnGeometry {
  int64_t groups;
  int group;
  size_t column_bytes, group_bytes, chunk_bytes;
  explicit ColumnGeometry(const ColumnLayout& l)
      : groups(l.cols / l.group),
        group(l.group),
        column_bytes(l.codes == ColumnCodes::Nibble ? 64 : 128),
        group_bytes(kScaleBytes + static_cast<size_t>(l.group) * column_bytes),
        chunk_bytes(static_cast<size_t>(groups) * group_bytes) {}
};

// Without it a decode step waits on DRAM every few columns: the kept columns
// are too irregular for the hardware prefetchers. 32 lines ahead (32 Nibble
// or 16 Int8 columns) measured best of 8, 16, 24 and 32 columns ahead (a
// little); prefetcht1/t2 no better than t0. Sapphire Rapids VM, one thread,
// 1536 x 1536 from DRAM (300 copies), AVX-512, without -> with:
//   Q4_K  10 % kept 74 -> 30 us, 50 % 162 -> 104 us, 100 % 135 -> 122 us
//   Q8_0  10 % kept 73 -> 32 us, 50 % 228 -> 154 us, 100 % 182 -> 176 us
constexpr int kPrefetchLines = 32;

inline void prefetch_line(const void* p) {
  // asm volatile: GCC deletes _mm_prefetch in loops that do nothing else (kernels/prefetch.h).
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
}

// Of a chunk's n kept items (inputs or pairs, read in order), the one `ahead`
// after item i: in this chunk, or wrapped into the next one. False when there
// is none (past the last chunk, or more than one chunk ahead).
inline bool item_ahead(int64_t i, int64_t ahead, int64_t n, const uint8_t* chunk, const uint8_t* next_chunk,
                       int64_t& item, const uint8_t*& base) {
  item = i + ahead;
  base = chunk;
  if (item < n) return true;
  if (!next_chunk || item - n >= n) return false;
  item -= n;
  base = next_chunk;
  return true;
}

// Prefetches kPrefetchLines lines of columns ahead in the order the kernels read
// them (the chunk's kept columns, then the next chunk's), and the scales of
// each group those inputs enter. Input j of group g sits at
//   g * group_bytes + scale_bytes + (j - g * group) * column_bytes
//     = scale_bytes + j * column_bytes + g * scale_bytes
// from its chunk's start: shifts and adds (group and column_bytes are powers of two).
class ColumnPrefetcher {
 public:
  ColumnPrefetcher(const ColumnGeometry& geo, const ActiveInputs& in)
      : index_(in.index),
        kept_(in.group_begin[geo.groups]),
        group_shift_(__builtin_ctz(static_cast<unsigned>(geo.group))),
        column_shift_(__builtin_ctzll(geo.column_bytes)),
        two_lines_(geo.column_bytes > 64),
        ahead_(kPrefetchLines / static_cast<int>(geo.column_bytes / 64)) {}

  // Called as the kernel reads kept input i of `chunk`.
  void ahead(const uint8_t* chunk, const uint8_t* next_chunk, int64_t i) {
    int64_t p;
    const uint8_t* base;
    if (!item_ahead(i, ahead_, kept_, chunk, next_chunk, p, base)) return;
    const auto j = static_cast<uint32_t>(index_[p]);
    const auto g = static_cast<int32_t>(j >> group_shift_);
    const uint8_t* col = base + kScaleBytes + (size_t{j} << column_shift_) + static_cast<size_t>(g) * kScaleBytes;
    prefetch_line(col);
    if (two_lines_) prefetch_line(col + 64);
    if (g == last_group_ && base == last_base_) return;
    const uint8_t* scales = col - kScaleBytes - (size_t{j & ((1u << group_shift_) - 1)} << column_shift_);
    for (size_t line = 0; line < kScaleBytes; line += 64) prefetch_line(scales + line);
    last_group_ = g;
    last_base_ = base;
  }

 private:
  const int32_t* index_;
  int64_t kept_;
  int group_shift_, column_shift_;
  bool two_lines_;
  int ahead_;  // kept inputs
  int32_t last_group_ = -1;
  const uint8_t* last_base_ = nullptr;
};

}  // namespace
}  // namespace kestrel::kernels
