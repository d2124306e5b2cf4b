#include "kv/attention.h"

#include <cassert>
#include <cstdint>

#include "core/error.h"

namespace kestrel {

kernels::KvRows window_rows(const KvCache& cache, const KvHeadView& h, int64_t first, int64_t n,
                            std::vector<int32_t>& ids) {
  // Positions map to rows only while no block is evicted (kvcompress is
  // refused for models with sliding windows: runtime/session.cpp).
  if (h.evicted > 0) fail("kv: a sliding-window layer cannot attend over evicted blocks");
  // CQ reads its F16 copies by logical block (kernels/cq_attention.h), which a row-addressed view loses.
  if (h.cq.k_centroids) fail("kv: a sliding-window layer cannot attend over a CQ cache");
  const int64_t per_block = KvCache::kBlock;  // rows per physical block
  if (cache.total_blocks() * per_block > INT32_MAX)
    fail("kv: ", cache.total_blocks(), " blocks of ", per_block, " rows are too many for a windowed view");
  ids.resize(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const int64_t pos = first + j;
    ids[static_cast<size_t>(j)] =
        static_cast<int32_t>(h.blocks[pos / KvCache::kBlock] * per_block + pos % KvCache::kBlock);
  }
  kernels::KvRows r = head_rows(h);
  r.ids = ids.data();
  r.stride_bytes = static_cast<int64_t>(cache.k_row_bytes());
  r.v_stride_bytes = static_cast<int64_t>(cache.v_row_bytes());
  r.block_len = 1;
  r.mean_id_div = per_block;
  return r;
}

void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head, const float* q,
                 int64_t n_visible, float* out, const kernels::AttentionKernelSet& attn) {
  assert(attn.k_type == cache.k_type() && attn.v_type == cache.v_type());
  const int kv_head = head / (p.n_head / p.n_kv_head);
  // Rows of the head's blocks, in position order (kv/kv_cache.h layout).
  const KvHeadView view = cache.view(layer, seq, kv_head);
  const int64_t first = window_first(p, n_visible - 1);
  if (first == 0) {
    const int64_t rows = n_visible - view.evicted;
    assert(rows <= static_cast<int64_t>(cache.block_table(seq, layer, kv_head).size()) * KvCache::kBlock);
    attn.row(head_rows(view), rows, p.head_dim, q, p.scale, out);
    return;
  }
  thread_local std::vector<int32_t> ids;
  attn.row(window_rows(cache, view, first, n_visible - first, ids), n_visible - first, p.head_dim, q, p.scale, out);
}

}  // namespace kestrel
