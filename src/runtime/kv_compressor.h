#pragma once
// KV-Compress in the hosts that keep a history (Session: run, chat, bench,
// longeval; Scheduler: serve): what the `kvcompress` and `kv_budget` switches
// ask for (switches/engine_config.h KvCompressConfig), and one sequence's
// compressor, which evicts after each prompt and, under a budget, during decode.
//
// After a prompt: the paper's KVC-w (kv/kv_compress.h): the squared attention
// of the prompt's last `observe` queries ranks the blocks of every layer and
// head together, and the lowest go back to the pool (rate and budget).
//
// During decode (a budget only): once the sequence holds one position block per
// head more than the budget allows, it is evicted down to the budget again. No
// query is observed for that: one forward pass observes one sequence
// (ForwardContext::observer), so a server decoding many sequences could not
// observe each of them in time. The rows kept from the prompt keep the score
// the prompt's queries gave them; rows written since (generated tokens, never
// observed) rank above every prompt row, older ones first. So decode evicts the
// least attended prompt blocks first and only then the oldest generated ones,
// and the sequence never holds more than decode_cap_blocks().
//
// A rate applies after a prompt only: applied again during decode it would
// compound (1/4 of 1/4, ...), since kv/kv_compress.h counts the blocks held now.
#include <cstdint>
#include <vector>

#include "kv/kv_compress.h"
#include "switches/engine_config.h"

namespace kestrel {

// The eviction spec of a configuration: off, a rate, window (1/4 without a
// budget), or kv_budget alone (the metric, down to the budget).
KvCompressSpec kv_compress_spec(const KvCompressConfig& config);

// The (layer, kv head) blocks seq holds (its tables' sizes: within one
// sequence no block is held twice), without KvCache::blocks_held's pass over the pool.
int64_t blocks_of(const KvCache& cache, int seq);

// What one compression did, in (layer, kv head) blocks of KvCache::kBlock positions.
struct EvictionCount {
  int64_t evicted = 0;  // taken out of the sequence's tables
  int64_t freed = 0;    // of those, back in the pool (a block another sequence shares stays)
  EvictionCount& operator+=(const EvictionCount& o) {
    evicted += o.evicted;
    freed += o.freed;
    return *this;
  }
};

class SequenceCompressor {
 public:
  SequenceCompressor(const KvCompressSpec& spec, int n_layer, int n_kv_head);

  bool on() const { return spec_.on(); }
  const KvCompressSpec& spec() const { return spec_; }
  // The first position a prompt ending at `end` (exclusive) has observed.
  int64_t observe_from(int64_t end) const;
  // A prompt of seq ends at `end`: the metric the forward passes evaluating
  // its last positions must observe (ForwardContext::observer), or nullptr
  // when the mode needs none (window).
  EvictionMetric* start_prompt(int seq, int64_t end);
  // Once the whole prompt is cached: evicts as the spec asks.
  EvictionCount after_prompt(KvCache& cache, int seq);
  // After a decode step: evicts down to the budget when seq holds
  // trigger_blocks() or more (nothing without a budget).
  EvictionCount after_decode(KvCache& cache, int seq);
  // Clears the history's scores (the sequence was cleared).
  void reset();

  // Under a budget, in (layer, kv head) blocks of `shape`: decode evicts once a
  // sequence holds trigger_blocks(); it never holds more than
  // decode_cap_blocks() after its prompt. 0 without a budget.
  int64_t trigger_blocks(const KvShape& shape) const;
  int64_t decode_cap_blocks(const KvShape& shape) const;

 private:
  EvictionCount evict(KvCache& cache, int seq, const KvCompressSpec& spec, const EvictionMetric* metric);

  KvCompressSpec spec_;
  int n_layer_, n_kv_head_;
  EvictionMetric observed_;  // the prompt's last queries, filled by the forward pass
  // Per (layer, head), per row of its table: the score decode-time eviction
  // ranks by (the prompt's metric, then generated rows above it), for the rows
  // at positions below scored_end_.
  std::vector<std::vector<float>> scores_;
  int64_t scored_end_ = 0;
};

}  // namespace kestrel
