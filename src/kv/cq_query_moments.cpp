// Query second moments per CQ key group (kv/cq_query_moments.h).
#include "kv/cq_query_moments.h"

#include "core/error.h"
#include "kv/cq_whitening.h"

namespace kestrel {

CqQueryMoments::CqQueryMoments(int n_layer, int n_kv_head, int head_dim, int c)
    : n_layer_(n_layer), n_kv_head_(n_kv_head), head_dim_(head_dim), c_(c) {
  if (c < 1 || head_dim % c != 0) fail("CQ query moments: a group of ", c, " channels does not divide ", head_dim);
  sums_.assign(static_cast<size_t>(n_layer) * n_kv_head * head_dim * c, 0.0);
  counts_.assign(static_cast<size_t>(n_layer) * n_kv_head, 0);
}

void CqQueryMoments::observe(const KvCache&, int layer, const AttentionParams& p, const AttentionBatch& b,
                             ThreadPool& pool) {
  if (layer < 0 || layer >= n_layer_ || p.n_kv_head != n_kv_head_ || p.head_dim != head_dim_)
    fail("CQ query moments: made for ", n_layer_, " layers x ", n_kv_head_, " kv heads x ", head_dim_,
         " channels, observed layer ", layer, " of ", p.n_kv_head, " x ", p.head_dim);
  const int per_kv = p.n_head / p.n_kv_head, groups = head_dim_ / c_;
  const int64_t q_dim = int64_t{p.n_head} * p.head_dim;
  // One task per kv head: each adds to its own sums, tokens in order (the sums do not depend on threads).
  pool.parallel_for(n_kv_head_, [&](int64_t h0, int64_t h1, int) {
    for (int64_t kv = h0; kv < h1; ++kv) {
      double* sums = sums_.data() + slot(layer, static_cast<int>(kv)) * head_dim_ * c_;
      for (int64_t t = 0; t < b.n_tokens; ++t)
        for (int h = static_cast<int>(kv) * per_kv; h < (static_cast<int>(kv) + 1) * per_kv; ++h) {
          const float* q = b.q + t * q_dim + int64_t{h} * p.head_dim;
          for (int g = 0; g < groups; ++g) cq_add_outer(sums + static_cast<size_t>(g) * c_ * c_, q + g * c_, c_);
        }
      counts_[slot(layer, static_cast<int>(kv))] += b.n_tokens * per_kv;
    }
  });
}

std::span<const double> CqQueryMoments::moment(int layer, int head, int g) const {
  const size_t n = static_cast<size_t>(c_) * c_;
  return {sums_.data() + slot(layer, head) * head_dim_ * c_ + static_cast<size_t>(g) * n, n};
}

}  // namespace kestrel
