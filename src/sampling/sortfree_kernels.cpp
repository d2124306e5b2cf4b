#include "sampling/sortfree_kernels.h"

#include <array>

#include "platform/dispatch.h"

namespace kestrel::sampling {
namespace {

const SortFreeKernels kRef{ref::scan_max,    ref::compact_ge, ref::count_split, ref::filter,    ref::exp_weights,
                           ref::normalize,   ref::chunk_sums, ref::sums_above,  Isa::Scalar};
const SortFreeKernels kAvx2{avx2::scan_max,    avx2::compact_ge, avx2::count_split, avx2::filter,   avx2::exp_weights,
                            avx2::normalize,   avx2::chunk_sums, avx2::sums_above,  Isa::Avx2};
const SortFreeKernels kAvx512{avx512::scan_max,  avx512::compact_ge, avx512::count_split,
                              avx512::filter,    avx512::exp_weights, avx512::normalize,
                              avx512::chunk_sums, avx512::sums_above, Isa::Avx512};
const PerIsa<const SortFreeKernels*> kTables = {&kRef, &kAvx2, &kAvx512};

}  // namespace

// The table for `isa` by the project's one dispatch rule (platform/dispatch.h).
const SortFreeKernels& sortfree_kernels(Isa isa) { return *pick_for_isa(kTables, isa); }

const SortFreeKernels& sortfree_kernels() {
  static const SortFreeKernels& best = sortfree_kernels(best_isa());
  return best;
}

}  // namespace kestrel::sampling
