#pragma once
// KV-Compress (PAPERS.md card 3): after a prompt, evict whole KV blocks at a
// different rate per (layer, kv head), keeping the blocks the attention used
// most. The metric of a cached key is the squared attention it received,
// summed over the query heads of its GQA group and over the last `observe`
// prompt queries (the paper's KVC-w); a block scores the largest metric of its
// rows; the blocks of every layer and head of the sequence are ranked together
// and the lowest go back to the pool (KvCache::evict), so each head keeps its
// own number of tokens. The last `protect` positions (and the block holding the
// sequence's end) are never evicted.
//
// `window` mode is StreamingLLM's baseline at the same block budget: it keeps
// the first block (the attention sinks) and the most recent blocks, the same
// number in every head.
//
// Granularity: the paper sorts single keys within a head and moves the kept
// ones together before freeing pages; here a block is kept or evicted whole, in
// place (a block keeps its position order and, for smoothed keys, its mean), so
// a block with one important key stays with its 15 neighbours.
#include <cstdint>
#include <span>
#include <vector>

#include "kv/attention.h"
#include "kv/attention_batch.h"
#include "kv/kv_cache.h"

namespace kestrel {

struct KvCompressSpec {
  enum class Mode : uint8_t { Off, Metric, Window };
  Mode mode = Mode::Off;
  double rate = 0;     // keep 1/rate of the sequence's blocks (0: no rate)
  int64_t budget = 0;  // keep at most this many positions per head on average (0: no budget)
  int64_t protect = 32;  // the most recent positions are never evicted
  int observe = 8;       // prompt queries whose attention is the metric
  bool on() const { return mode != Mode::Off && (rate > 1 || budget > 0); }
};

// Made from the kvcompress / kv_budget switches by runtime/kv_compressor.h
// kv_compress_spec (the one reading of their values).
// The squared attention each cached key of one sequence received, per (layer,
// kv head) and row of that head's table. Filled by observe() during the
// forward pass of the last prompt tokens (ForwardContext::observer).
class EvictionMetric : public AttentionObserver {
 public:
  EvictionMetric(int n_layer, int n_kv_head) : n_layer_(n_layer), n_kv_head_(n_kv_head) {}
  // Observe the tokens of `seq` at positions >= from (and no other sequence).
  void start(int seq, int64_t from);
  void stop() { seq_ = -1; }
  // Adds p^2 for every observed (token, query head) of the batch (scalar; the
  // keys dequantized from any KV type, rotation and smoothing undone).
  void observe(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b,
               ThreadPool& pool) override;
  // Row r of (layer, head): its metric (0 when never observed).
  float at(int layer, int head, int64_t r) const;
  // Adds to row r's metric directly (tests, and metrics from elsewhere).
  void add(int layer, int head, int64_t r, float value);
  int seq() const { return seq_; }

 private:
  std::vector<float>& rows(int layer, int head) {
    return sums_[static_cast<size_t>(layer) * n_kv_head_ + head];
  }
  int n_layer_, n_kv_head_;
  int seq_ = -1;
  int64_t from_ = 0;
  std::vector<std::vector<float>> sums_;
};

// One block's score and where it is.
struct BlockScore {
  KvBlockRef ref;
  float score = 0;
};

// The n blocks with the lowest scores (ties: by layer, head, index), the
// eviction choice. Pure: the brute-force tests' subject.
std::vector<KvBlockRef> lowest_blocks(std::vector<BlockScore> scores, int64_t n);

// Scores every evictable block of seq (full, below the protected positions)
// and evicts as many as the spec's rate or budget asks, counted over all the
// sequence's blocks. Returns the blocks evicted.
std::vector<KvBlockRef> compress_sequence(KvCache& cache, int seq, const KvCompressSpec& spec,
                                          const EvictionMetric* metric);

}  // namespace kestrel
