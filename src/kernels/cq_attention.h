#pragma once
// Attention over a CQ cache (kv=cq2, cq1; PAPERS.md card 8, issue 14): one
// query row against n rows whose keys and values are codes
// (kernels/cq_kernels.h), with exact F16 copies of the most recent rows
// (KvRows::cq). The query builds its score table once; each coded key then
// costs one lookup per channel group, each coded value one bucket addition per
// group, and the buckets meet V's centroids once at the end. Rows read from
// their F16 copies take CqKernels' copy_dot and copy_axpy (SIMD: scalar std::fma
// in a generic translation unit is a libm call per product, and the window's
// copies were half of SmolLM2's decode time with kv=cq2).
//
//   s_j  = T . codes_j (coded) or (q scale) . k_j (F16 copy)
//   p_j  = exp(s_j - max s)              two passes: the scores are kept
//   out  = (buckets_out(B) + sum_{F16 j} p_j v_j) / sum_j p_j
//
// Prompt batches take the same kernel per query row (attend_cq_tile): the
// split between codes and copies moves with each query's position.
//
// Every Isa gives the same bits: the only SIMD parts are the CqKernels, which
// are bit-identical across levels (kernels/cq_kernels.h), and the rest is the
// same scalar code. The scalar twin is the Isa::Scalar set.
#include <cstdint>

#include "kernels/attention_set.h"
#include "kernels/cq_kernels.h"

namespace kestrel::kernels {

// kv: codes (K and V, kBlock rows per block, one byte per group) and kv.cq.
void attend_cq(const CqKernels& ck, const KvRows& kv, int64_t n, int d, const float* q, float scale, float* out);

}  // namespace kestrel::kernels
