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
// Codebooks learnt under a metric (the default for keys) hold whitened
// centroids E = W C (kv/cq_codebook.h, CqRows::k_whitening): the query is
// mapped by W^-T before its table (q . C = (W^-T q) . E), V's bucket output by
// W^-1, decoded rows by W^-1 per code (kernels/cq_whiten.h), so the model holds
// one codebook per head and K/V, not C and W C.
//
// Prompt tiles dequantize instead (decode_cq_rows, then the F32 tile kernel of
// kernels/attention_tiled.h; the issue allows it): a table per query and a
// gather per (key, group) cost several times the SIMD dot products when a tile
// of up to 64 query rows reads the same keys, and decoding the rows once per
// tile is a copy of c floats per (row, group). The scores are then the same
// sums of products in the tile kernel's order. One difference in what is read:
// a tile's rows share one window, its last query's (the row kernel moves the
// split between codes and copies with each query), so a query that is not the
// tile's last reads up to (tokens in the tile - 1) of its most recent rows from
// their codes instead of their copies: conservative (never more exact than the
// row kernel), at most 63 / group size of the 128 window rows (21 for SmolLM2's
// 3 query heads per kv head, 9-10 for Qwen2.5's 6-7). Decode, and prompt
// batches under kMinTiledTokens, take the row kernel.
//
// Every Isa gives the same bits in the row kernel: the only SIMD parts are the
// CqKernels, which are bit-identical across levels (kernels/cq_kernels.h), and
// the rest is the same scalar code. The scalar twin is the Isa::Scalar set.
#include <cstdint>

#include "kernels/attention_set.h"
#include "kernels/cq_kernels.h"

namespace kestrel::kernels {

// kv: codes (K and V, kBlock rows per block, one byte per group) and kv.cq.
void attend_cq(const CqKernels& ck, const KvRows& kv, int64_t n, int d, const float* q, float scale, float* out);

// Rows [0, n) of one CQ head as a query over n rows reads them (what the row
// kernel reads for that query), in F32: coded
// rows through the centroids, the F16 copies (window, sink) widened. k and v:
// [n][d] each.
void decode_cq_rows(const KvRows& kv, int64_t n, int d, float* k, float* v);

}  // namespace kestrel::kernels
