#pragma once
// Causal attention of one query token against the cached keys and values of
// its sequence. Grouped-query: query head h reads kv head h / (n_head / n_kv_head).
// With an F16 cache the query is rounded to F16 before the dot products, as
// llama.cpp does, so that scores match its numerics.
#include <cstdint>

#include "kv/attention_kernels.h"
#include "kv/kv_cache.h"
#include "platform/cpu.h"

namespace kestrel {

struct AttentionParams {
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  float scale = 1.0f;  // usually 1/sqrt(head_dim)
};

// q: [head_dim] of query head `head`; sees positions [0, n_visible).
// out: [head_dim]. One pass with an online softmax (kv/attention_kernels.h).
// A head's rows as the kernels take them: the view's blocks, kBlock rows each.
template <class T>
kv::KvBlocks<T> head_blocks(const KvHeadView& h) {
  return kv::KvBlocks<T>{static_cast<const T*>(h.k), static_cast<const T*>(h.v), h.blocks, h.block_stride,
                         KvCache::kBlock};
}

void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head,
                 const float* q, int64_t n_visible, float* out, Isa isa);

}  // namespace kestrel
