#pragma once
// Causal attention of one query token against the cached keys and values of
// its sequence. Grouped-query: query head h reads kv head h / (n_head / n_kv_head).
// The exact kernels convert the query to K's vec_dot type before the dot
// products (F16 for an F16 cache, Q8_0 for Q8_0 keys, ...), as llama.cpp does,
// so that scores match its numerics.
#include <cstdint>
#include <vector>

#include "kernels/attention_set.h"
#include "kv/kv_cache.h"

namespace kestrel {

struct AttentionParams {
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  float scale = 1.0f;  // usually 1/sqrt(head_dim)
  // Sliding window (Gemma 3's local layers): the token at position p sees
  // [max(0, p - window + 1), p]. 0: every earlier position.
  int64_t window = 0;
};

// First position a token at `pos` sees under p's window (0 when none binds).
inline int64_t window_first(const AttentionParams& p, int64_t pos) {
  return p.window > 0 && pos + 1 > p.window ? pos + 1 - p.window : 0;
}

// A head's rows as the kernels take them: the view's blocks, kBlock rows each.
inline kernels::KvRows head_rows(const KvHeadView& h) {
  return kernels::KvRows{h.k,      h.v,      h.blocks, h.block_stride, KvCache::kBlock, h.v_block_stride,
                         h.k_type, h.v_type, h.k_rot,  h.v_rot,        h.k_mean,        h.mean_stride,
                         1,        h.cq};
}

// Rows [first, first + n) of one head as n blocks of one row each: a view that
// starts anywhere, so every attention kernel (row or tile, every Isa) honours a
// window with no support of its own. Block id = physical block * kBlock + row:
// a physical block is kBlock rows of K and of V alike, so one id addresses the
// same row of both when the strides are one K row and one V row. `ids` holds
// the table (resized here).
// Throws when the pool has too many rows for 32-bit ids.
kernels::KvRows window_rows(const KvCache& cache, const KvHeadView& h, int64_t first, int64_t n,
                            std::vector<int32_t>& ids);

// q: [head_dim] of query head `head`; sees positions [0, n_visible) (but the
// evicted ones: KvHeadView::evicted), or under p.window the last p.window of them.
// out: [head_dim]. One pass with an online softmax, by `attn`, which must have
// been picked for the cache's type (kernels/attention_set.h).
void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head,
                 const float* q, int64_t n_visible, float* out, const kernels::AttentionKernelSet& attn);

}  // namespace kestrel
