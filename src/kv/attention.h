#pragma once
// Causal attention of one query token against the cached keys and values of
// its sequence. Grouped-query: query head h reads kv head h / (n_head / n_kv_head).
// The exact kernels convert the query to K's vec_dot type before the dot
// products (F16 for an F16 cache, Q8_0 for Q8_0 keys, ...), as llama.cpp does,
// so that scores match its numerics.
#include <cstdint>

#include "kernels/attention_set.h"
#include "kv/kv_cache.h"

namespace kestrel {

struct AttentionParams {
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  float scale = 1.0f;  // usually 1/sqrt(head_dim)
};

// A head's rows as the kernels take them: the view's blocks, kBlock rows each.
inline kernels::KvRows head_rows(const KvHeadView& h) {
  return kernels::KvRows{h.k,      h.v,      h.blocks, h.block_stride, KvCache::kBlock, h.v_block_stride,
                        h.k_type, h.v_type, h.k_rot,  h.v_rot};
}

// q: [head_dim] of query head `head`; sees positions [0, n_visible).
// out: [head_dim]. One pass with an online softmax, by `attn`, which must have
// been picked for the cache's type (kernels/attention_set.h).
void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head,
                 const float* q, int64_t n_visible, float* out, const kernels::AttentionKernelSet& attn);

}  // namespace kestrel
