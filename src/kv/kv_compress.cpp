#include "kv/kv_compress.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/hadamard.h"
#include "kernels/quant_kernels.h"
#include "kv/attention_batch.h"

namespace kestrel {

void EvictionMetric::start(int seq, int64_t from) {
  seq_ = seq;
  from_ = std::max<int64_t>(0, from);
  sums_.assign(static_cast<size_t>(n_layer_) * n_kv_head_, {});
}

float EvictionMetric::at(int layer, int head, int64_t r) const {
  const auto& v = sums_.at(static_cast<size_t>(layer) * n_kv_head_ + head);
  return r < static_cast<int64_t>(v.size()) ? v[static_cast<size_t>(r)] : 0.0f;
}

void EvictionMetric::add(int layer, int head, int64_t r, float value) {
  if (sums_.empty()) sums_.assign(static_cast<size_t>(n_layer_) * n_kv_head_, {});
  auto& v = rows(layer, head);
  if (static_cast<int64_t>(v.size()) <= r) v.resize(static_cast<size_t>(r) + 1, 0.0f);
  v[static_cast<size_t>(r)] += value;
}

void EvictionMetric::observe(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b,
                             ThreadPool& pool) {
  if (seq_ < 0) return;
  const int d = p.head_dim;
  const int group = p.n_head / p.n_kv_head;
  const int64_t q_dim = int64_t{p.n_head} * d;
  // One task per kv head: it alone writes that head's sums. Each cached key is
  // dequantized once and scored against every observed query of the group.
  pool.parallel_for_dynamic(p.n_kv_head, 1, [&](int64_t h0, int64_t h1, int) {
    std::vector<float> queries, key(static_cast<size_t>(d)), scores;
    std::vector<int64_t> visible;  // rows each observed query sees
    for (int64_t kvh = h0; kvh < h1; ++kvh) {
      const KvHeadView view = cache.view(layer, seq_, static_cast<int>(kvh));
      queries.clear();
      visible.clear();
      for (int64_t t = 0; t < b.n_tokens; ++t) {
        if (b.seq[t] != seq_ || b.pos[t] < from_) continue;
        for (int g = 0; g < group; ++g) {
          const float* qh = b.q + t * q_dim + (kvh * group + g) * d;
          queries.insert(queries.end(), qh, qh + d);
          // Keys were stored rotated: q . k = (H q) . (H k).
          if (view.k_rot) kernels::hadamard_chunks(queries.data() + queries.size() - d, d, view.k_rot);
          visible.push_back(int64_t{b.pos[t]} + 1 - view.evicted);
        }
      }
      if (visible.empty()) continue;
      const auto m = static_cast<int64_t>(visible.size());
      const int64_t n = *std::max_element(visible.begin(), visible.end());
      scores.assign(static_cast<size_t>(m * n), 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        cache.key_row(view, j, n, key.data());
        for (int64_t i = 0; i < m; ++i) {
          if (j >= visible[i]) continue;
          const float* q = queries.data() + i * d;
          float dot = 0;
          for (int c = 0; c < d; ++c) dot += q[c] * key[c];
          scores[i * n + j] = dot * p.scale;
        }
      }
      std::vector<float>& sum = rows(layer, static_cast<int>(kvh));
      if (static_cast<int64_t>(sum.size()) < n) sum.resize(static_cast<size_t>(n), 0.0f);
      for (int64_t i = 0; i < m; ++i) {
        const float* s = scores.data() + i * n;
        const float max = *std::max_element(s, s + visible[i]);
        double z = 0;
        for (int64_t j = 0; j < visible[i]; ++j) z += std::exp(static_cast<double>(s[j] - max));
        for (int64_t j = 0; j < visible[i]; ++j) {
          const double pj = std::exp(static_cast<double>(s[j] - max)) / z;
          sum[static_cast<size_t>(j)] += static_cast<float>(pj * pj);
        }
      }
    }
  });
}

std::vector<KvBlockRef> lowest_blocks(std::vector<BlockScore> scores, int64_t n) {
  auto key = [](const BlockScore& b) { return std::make_tuple(b.score, b.ref.layer, b.ref.head, b.ref.index); };
  n = std::clamp<int64_t>(n, 0, static_cast<int64_t>(scores.size()));
  std::partial_sort(scores.begin(), scores.begin() + n, scores.end(),
                    [&](const BlockScore& a, const BlockScore& b) { return key(a) < key(b); });
  std::vector<KvBlockRef> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.push_back(scores[static_cast<size_t>(i)].ref);
  return out;
}

std::vector<KvBlockRef> compress_sequence(KvCache& cache, int seq, const KvCompressSpec& spec,
                                          const EvictionMetric* metric) {
  if (!spec.on()) return {};
  const KvShape& shape = cache.shape();
  const int64_t len = cache.seq_len(seq);
  // Position blocks from here on are kept: the protected window and the block
  // holding the end (partly filled, and where the next token goes).
  const int64_t keep_from = std::max<int64_t>(0, len - spec.protect) / KvCache::kBlock;
  int64_t held = 0;
  std::vector<BlockScore> scores;
  for (int l = 0; l < shape.n_layer; ++l)
    for (int h = 0; h < shape.n_kv_head; ++h) {
      const int64_t n_blocks = static_cast<int64_t>(cache.block_table(seq, l, h).size());
      held += n_blocks;
      for (int64_t i = 0; i < n_blocks; ++i) {
        const int64_t pb = cache.block_position(seq, l, h, i);
        if (pb >= keep_from) continue;
        float score = 0;
        if (spec.mode == KvCompressSpec::Mode::Window) {
          if (pb == 0) continue;  // the attention sinks
          score = static_cast<float>(pb);  // older first
        } else {
          for (int64_t r = i * KvCache::kBlock; r < (i + 1) * KvCache::kBlock; ++r)
            score = std::max(score, metric ? metric->at(l, h, r) : 0.0f);
        }
        scores.push_back({{l, h, i}, score});
      }
    }
  // A rate counts the sequence's whole length, not what it holds now: a
  // second prompt (a chat turn) compressed again keeps 1/rate of everything,
  // not 1/rate of what the first compression left.
  const int64_t full = (len + KvCache::kBlock - 1) / KvCache::kBlock * shape.n_layer * shape.n_kv_head;
  int64_t keep = held;
  if (spec.rate > 1) keep = std::min<int64_t>(keep, static_cast<int64_t>(std::ceil(full / spec.rate)));
  if (spec.budget > 0)
    keep = std::min<int64_t>(keep, (spec.budget + KvCache::kBlock - 1) / KvCache::kBlock * shape.n_layer *
                                       shape.n_kv_head);
  std::vector<KvBlockRef> out = lowest_blocks(std::move(scores), held - keep);
  cache.evict(seq, out);
  return out;
}

}  // namespace kestrel
