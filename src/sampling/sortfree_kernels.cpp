#include "sampling/sortfree_kernels.h"

#include <array>

namespace kestrel::sampling {
namespace {

SortFreeKernels make_table(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return {avx512::scan_max, avx512::compact_ge, avx512::count_split, avx512::filter,
              avx512::exp_weights, avx512::normalize, avx512::chunk_sums, avx512::sums_above, Isa::Avx512};
    case Isa::Avx2:
      return {avx2::scan_max, avx2::compact_ge, avx2::count_split, avx2::filter,
              avx2::exp_weights, avx2::normalize, avx2::chunk_sums, avx2::sums_above, Isa::Avx2};
    case Isa::Scalar:
      break;
  }
  return {ref::scan_max, ref::compact_ge, ref::count_split, ref::filter,
          ref::exp_weights, ref::normalize, ref::chunk_sums, ref::sums_above, Isa::Scalar};
}

// The highest level at or below `isa` that the CPU runs.
Isa runnable(Isa isa) {
  while (isa != Isa::Scalar && !isa_supported(isa)) isa = static_cast<Isa>(static_cast<int>(isa) - 1);
  return isa;
}

}  // namespace

const SortFreeKernels& sortfree_kernels(Isa isa) {
  static const std::array<SortFreeKernels, 3> tables = {make_table(Isa::Scalar), make_table(Isa::Avx2),
                                                        make_table(Isa::Avx512)};
  return tables[static_cast<size_t>(runnable(isa))];
}

const SortFreeKernels& sortfree_kernels() {
  static const SortFreeKernels& best = sortfree_kernels(best_isa());
  return best;
}

}  // namespace kestrel::sampling
