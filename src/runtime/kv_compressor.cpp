#include "runtime/kv_compressor.h"

#include <algorithm>

namespace kestrel {
namespace {

// Rows written after the last observation (generated tokens) score this plus
// their position: above any prompt row (a squared probability summed over at
// most `observe` queries of a GQA group), the older ones lower. Exact in float
// up to 2^24 - kGenerated positions.
constexpr float kGenerated = 1e6f;

int64_t blocks_for(int64_t positions) { return (positions + KvCache::kBlock - 1) / KvCache::kBlock; }

}  // namespace

KvCompressSpec kv_compress_spec(const KvCompressConfig& c) {
  using Mode = KvCompressConfig::Mode;
  KvCompressSpec s;
  s.budget = c.budget;
  switch (c.mode) {
    case Mode::Off:
      s.mode = c.budget > 0 ? KvCompressSpec::Mode::Metric : KvCompressSpec::Mode::Off;
      break;
    case Mode::Metric:
      s.mode = KvCompressSpec::Mode::Metric;
      s.rate = c.rate;
      break;
    case Mode::Window:
      s.mode = KvCompressSpec::Mode::Window;
      s.rate = c.rate > 0 ? c.rate : (c.budget > 0 ? 0 : 4);
      break;
  }
  return s;
}

int64_t blocks_of(const KvCache& cache, int seq) {
  int64_t n = 0;
  for (int l = 0; l < cache.shape().n_layer; ++l)
    for (int h = 0; h < cache.shape().n_kv_head; ++h) n += static_cast<int64_t>(cache.block_table(seq, l, h).size());
  return n;
}

SequenceCompressor::SequenceCompressor(const KvCompressSpec& spec, int n_layer, int n_kv_head)
    : spec_(spec),
      n_layer_(n_layer),
      n_kv_head_(n_kv_head),
      observed_(n_layer, n_kv_head),
      scores_(static_cast<size_t>(n_layer) * n_kv_head) {}

int64_t SequenceCompressor::observe_from(int64_t end) const { return std::max<int64_t>(0, end - spec_.observe); }

EvictionMetric* SequenceCompressor::start_prompt(int seq, int64_t end) {
  if (!on() || spec_.mode != KvCompressSpec::Mode::Metric) return nullptr;
  observed_.start(seq, observe_from(end));
  return &observed_;
}

EvictionCount SequenceCompressor::after_prompt(KvCache& cache, int seq) {
  if (!on()) return {};
  const bool metric = spec_.mode == KvCompressSpec::Mode::Metric;
  const EvictionCount n = evict(cache, seq, spec_, metric ? &observed_ : nullptr);
  observed_.stop();
  return n;
}

EvictionCount SequenceCompressor::after_decode(KvCache& cache, int seq) {
  if (!on() || spec_.budget <= 0) return {};
  if (blocks_of(cache, seq) < trigger_blocks(cache.shape())) return {};
  KvCompressSpec spec = spec_;
  spec.rate = 0;  // the budget only: a rate was applied after the prompt
  if (spec_.mode == KvCompressSpec::Mode::Window) return evict(cache, seq, spec, nullptr);
  EvictionMetric ranked(n_layer_, n_kv_head_);
  for (int l = 0; l < n_layer_; ++l)
    for (int h = 0; h < n_kv_head_; ++h) {
      const std::vector<float>& kept = scores_[static_cast<size_t>(l) * n_kv_head_ + h];
      const int64_t n_blocks = static_cast<int64_t>(cache.block_table(seq, l, h).size());
      for (int64_t i = 0; i < n_blocks; ++i) {
        const int64_t first = cache.block_position(seq, l, h, i) * KvCache::kBlock;
        for (int64_t k = 0; k < KvCache::kBlock; ++k) {
          const int64_t r = i * KvCache::kBlock + k, pos = first + k;
          const bool scored = pos < scored_end_ && r < static_cast<int64_t>(kept.size());
          ranked.add(l, h, r, scored ? kept[static_cast<size_t>(r)] : kGenerated + static_cast<float>(pos));
        }
      }
    }
  return evict(cache, seq, spec, &ranked);
}

void SequenceCompressor::reset() {
  observed_.stop();
  for (auto& s : scores_) s.clear();
  scored_end_ = 0;
}

int64_t SequenceCompressor::trigger_blocks(const KvShape& shape) const {
  if (!on() || spec_.budget <= 0) return 0;
  const int64_t per_pb = int64_t{shape.n_layer} * shape.n_kv_head;
  // Never evicted: the protected positions, the block holding the end, and
  // (window) the first block.
  const int64_t floor = (blocks_for(spec_.protect) + 2) * per_pb;
  return std::max(blocks_for(spec_.budget) * per_pb, floor) + per_pb;
}

int64_t SequenceCompressor::decode_cap_blocks(const KvShape& shape) const {
  // Below the trigger before a step; one step adds at most one block per head.
  const int64_t trigger = trigger_blocks(shape);
  return trigger > 0 ? trigger + int64_t{shape.n_layer} * shape.n_kv_head : 0;
}

EvictionCount SequenceCompressor::evict(KvCache& cache, int seq, const KvCompressSpec& spec,
                                        const EvictionMetric* metric) {
  const int64_t free_before = cache.free_blocks();
  const std::vector<KvBlockRef> gone = compress_sequence(cache, seq, spec, metric);
  const EvictionCount n{static_cast<int64_t>(gone.size()), cache.free_blocks() - free_before};
  if (spec_.budget <= 0 || spec_.mode != KvCompressSpec::Mode::Metric) return n;
  // Carry the scores of the rows that stay, in their new places, for decode.
  std::vector<std::vector<uint8_t>> evicted(scores_.size());
  for (const KvBlockRef& b : gone) {
    auto& e = evicted[static_cast<size_t>(b.layer) * n_kv_head_ + b.head];
    if (static_cast<int64_t>(e.size()) <= b.index) e.resize(static_cast<size_t>(b.index) + 1, 0);
    e[static_cast<size_t>(b.index)] = 1;
  }
  for (int l = 0; l < n_layer_; ++l)
    for (int h = 0; h < n_kv_head_; ++h) {
      const size_t s = static_cast<size_t>(l) * n_kv_head_ + h;
      const int64_t n_before = static_cast<int64_t>(cache.block_table(seq, l, h).size()) +
                               std::count(evicted[s].begin(), evicted[s].end(), uint8_t{1});
      std::vector<float> next;
      for (int64_t i = 0; i < n_before; ++i) {
        if (i < static_cast<int64_t>(evicted[s].size()) && evicted[s][static_cast<size_t>(i)]) continue;
        for (int64_t r = i * KvCache::kBlock; r < (i + 1) * KvCache::kBlock; ++r)
          next.push_back(metric ? metric->at(l, h, r) : 0.0f);
      }
      scores_[s] = std::move(next);
    }
  scored_end_ = cache.seq_len(seq);
  return n;
}

}  // namespace kestrel
