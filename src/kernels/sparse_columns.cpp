// TEAL's input-major layout: which codes a format gets, and the kernel table
// (one candidate per Isa level, platform/dispatch.h).
#include "kernels/sparse_columns.h"

#include <array>

#include "core/error.h"
#include "kernels/sparse_columns_isa.h"
#include "platform/dispatch.h"

namespace kestrel::kernels {

ColumnLayout column_layout(DType type, int64_t rows, int64_t cols) {
  ColumnLayout l;
  l.rows = rows;
  l.cols = cols;
  switch (type) {
    // W = s v - m exactly, v a 4-bit code.
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q4_K:
      l.codes = ColumnCodes::Nibble;
      break;
    // Exact with 5- or 8-bit codes.
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q5_K:
      break;
    case DType::Q6_K:  // 16 inputs share a sub-block scale
      l.group = 16;
      break;
    // No (scale, offset, small code) form kept: int8 codes per (row, 32 inputs).
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::IQ4_NL:
    case DType::IQ4_XS:
      break;
    default:
      fail("sparse columns: no input-major layout for tensor type ", dtype_name(type));
  }
  const int64_t block = traits(type).block_size;
  if (rows < 0 || cols < 0 || cols % block != 0 || cols % l.group != 0)
    fail("sparse columns: a ", dtype_name(type), " weight of ", rows, " x ", cols, " (inputs must be a multiple of ",
         block > l.group ? block : l.group, ")");
  return l;
}

namespace {

struct SparseCandidates {
  PerIsa<SparseGemvFn> gemv_nibble;
  PerIsa<SparseGemvFn> gemv_int8;
  PerIsa<PairedGemvFn> gemv_nibble_pairs;
  PerIsa<SelectInputsFn> select;
};

constexpr SparseCandidates kSparse = {
    // clang-format off
    {ref::sparse_gemv_nibble, avx2::sparse_gemv_nibble, avx512::sparse_gemv_nibble},
    {ref::sparse_gemv_int8, avx2::sparse_gemv_int8, avx512::sparse_gemv_int8},
    {ref::sparse_gemv_nibble_pairs, avx2::sparse_gemv_nibble_pairs, nullptr},
    {ref::select_inputs, avx2::select_inputs, avx512::select_inputs},
    // clang-format on
};

std::array<SparseColumnKernels, kIsaLevels> build_sparse_tables() {
  std::array<SparseColumnKernels, kIsaLevels> t{};
  for (int level = 0; level < kIsaLevels; ++level) {
    const Isa isa = static_cast<Isa>(level);
    t[static_cast<size_t>(level)] = SparseColumnKernels{
        pick_for_isa(kSparse.gemv_nibble, isa), pick_for_isa(kSparse.gemv_int8, isa),
        pick_for_isa(kSparse.gemv_nibble_pairs, isa), pick_for_isa(kSparse.select, isa), runnable_isa(isa)};
  }
  return t;
}

}  // namespace

const SparseColumnKernels& sparse_column_kernels(Isa isa) {
  static const std::array<SparseColumnKernels, kIsaLevels> tables = build_sparse_tables();
  return tables[static_cast<size_t>(runnable_isa(isa))];
}

}  // namespace kestrel::kernels
