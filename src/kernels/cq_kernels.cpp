// The CQ kernel table, one row per Isa level (platform/dispatch.h).
#include "kernels/cq_kernels.h"

#include <array>

#include "platform/dispatch.h"

namespace kestrel::kernels {
namespace {

struct CqCandidates {
  PerIsa<CqEncodeFn> encode;
  PerIsa<CqEncodeF32Fn> encode_f32;
  PerIsa<CqScoreTableFn> score_table;
  PerIsa<CqScoresFn> scores;
  PerIsa<CqBucketsFn> add_buckets;
  PerIsa<CqBucketsOutFn> buckets_out;
  PerIsa<CqCopyDotFn> copy_dot;
  PerIsa<CqCopyAxpyFn> copy_axpy;
};

constexpr CqCandidates kCq = {
    // clang-format off
    {ref::cq_encode, avx2::cq_encode, nullptr},
    {ref::cq_encode_f32, avx2::cq_encode_f32, nullptr},
    {ref::cq_score_table, avx2::cq_score_table, nullptr},
    {ref::cq_scores, avx2::cq_scores, nullptr},
    {ref::cq_add_buckets, nullptr, nullptr},
    {ref::cq_buckets_out, avx2::cq_buckets_out, nullptr},
    {ref::cq_copy_dot, avx2::cq_copy_dot, nullptr},
    {ref::cq_copy_axpy, avx2::cq_copy_axpy, nullptr},
    // clang-format on
};

std::array<CqKernels, kIsaLevels> build_cq_tables() {
  std::array<CqKernels, kIsaLevels> t{};
  for (int level = 0; level < kIsaLevels; ++level) {
    const Isa isa = static_cast<Isa>(level);
    t[static_cast<size_t>(level)] = CqKernels{
        pick_for_isa(kCq.encode, isa),   pick_for_isa(kCq.encode_f32, isa),  pick_for_isa(kCq.score_table, isa),
        pick_for_isa(kCq.scores, isa),   pick_for_isa(kCq.add_buckets, isa), pick_for_isa(kCq.buckets_out, isa),
        pick_for_isa(kCq.copy_dot, isa), pick_for_isa(kCq.copy_axpy, isa),   runnable_isa(isa)};
  }
  return t;
}

}  // namespace

const CqKernels& cq_kernels(Isa isa) {
  static const std::array<CqKernels, kIsaLevels> tables = build_cq_tables();
  return tables[static_cast<size_t>(runnable_isa(isa))];
}

}  // namespace kestrel::kernels
