#pragma once
// The queries' second moments per CQ key group (kv/cq_whitening.h): an
// attention observer (kv/attention_batch.h) that adds q_g q_g^T of every query
// of a forward pass to its (layer, kv head, group), over the query heads that
// read that kv head (GQA). The queries are the ones the attention gets: after
// RoPE, as the cached keys they meet, and before the 1/sqrt(d) scale, which
// scales every moment alike.
#include <cstdint>
#include <span>
#include <vector>

#include "kv/attention_batch.h"

namespace kestrel {

class CqQueryMoments : public AttentionObserver {
 public:
  // Groups of c consecutive channels of head_dim.
  CqQueryMoments(int n_layer, int n_kv_head, int head_dim, int c);

  void observe(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b,
               ThreadPool& pool) override;

  // Sum of q_g q_g^T, [c][c], over the queries seen by (layer, kv head); group g.
  std::span<const double> moment(int layer, int head, int g) const;
  // Query rows (token, query head) added to each kv head of `layer`.
  int64_t queries(int layer, int head) const { return counts_[slot(layer, head)]; }
  int channels_per_group() const { return c_; }

 private:
  size_t slot(int layer, int head) const { return static_cast<size_t>(layer) * n_kv_head_ + head; }
  int n_layer_, n_kv_head_, head_dim_, c_;
  std::vector<double> sums_;  // [layer][kv head][group][c][c]
  std::vector<int64_t> counts_;
};

}  // namespace kestrel
