#pragma once
// Attention for every (token, query head) of a forward batch: the one place the
// model asks for it, and where the algorithm is chosen.
//  - batches of kMinTiledTokens (64) tokens or more: the tiled kernel
//    (kernels/attention_tiled.h), query rows grouped by sequence and kv head, up to
//    64 rows per task; as llama.cpp, which takes its tiled flash attention from
//    64 tokens in a batch on;
//  - smaller batches (decode, short prompts): one task per (token, head) with the
//    per-query kernel (kv/attention.h), llama.cpp's one-row flash attention.
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "kv/attention.h"
#include "kv/kv_cache.h"
#include "platform/thread_pool.h"

namespace kestrel {

// Token t of the batch belongs to sequence seq[t] at position pos[t] and sees
// positions [0, pos[t]] (under AttentionParams::window, the last `window` of
// them). q, out: [n_tokens][n_head * head_dim].
struct AttentionBatch {
  int64_t n_tokens = 0;
  const int32_t* seq = nullptr;
  const int32_t* pos = nullptr;
  const float* q = nullptr;
  float* out = nullptr;
};

// Shown every batch's queries and the cache before the attention runs: KV-Compress's
// metric (kv/kv_compress.h) and CQ calibration's query moments (kv/cq_query_moments.h).
class AttentionObserver {
 public:
  virtual ~AttentionObserver() = default;
  virtual void observe(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b,
                       ThreadPool& pool) = 0;
};

// Several observers on the one hook (ForwardContext::observer), in order; the
// null ones are left out.
class AttentionObservers : public AttentionObserver {
 public:
  AttentionObservers(std::initializer_list<AttentionObserver*> observers) {
    for (AttentionObserver* o : observers)
      if (o) observers_.push_back(o);
  }
  void observe(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b,
               ThreadPool& pool) override {
    for (AttentionObserver* o : observers_) o->observe(cache, layer, p, b, pool);
  }
  bool empty() const { return observers_.empty(); }

 private:
  std::vector<AttentionObserver*> observers_;
};

// `attn` must have been picked for the cache's type (kernels/attention_set.h).
// `observer`: when set, sees the batch first.
void attend_batch(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b, ThreadPool& pool,
                  const kernels::AttentionKernelSet& attn, AttentionObserver* observer = nullptr);

}  // namespace kestrel
