// KV-Compress: the eviction choice against brute force, the cache's per-head
// eviction (blocks back to the pool and reused, per-head lengths, refusals), the
// attention over evicted heads against a double-precision reference over the
// kept rows (decode and tiled prompt kernels), and the observed metric against
// a brute-force softmax.
#include "kv/kv_compress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "kernels/attention_set.h"
#include "kv/attention_batch.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

constexpr int kB = KvCache::kBlock;

// Every position's K and V for each (layer, head), so references can be formed.
struct Filled {
  int n_layer, n_kv, d;
  int64_t n;
  std::vector<float> k, v;  // [pos][layer][head][d]
  float* at(std::vector<float>& x, int64_t pos, int l, int h) {
    return x.data() + ((pos * n_layer + l) * n_kv + h) * d;
  }
};

Filled fill(KvCache& c, int64_t from, int64_t n, uint32_t seed) {
  const KvShape& s = c.shape();
  Filled f{s.n_layer, s.n_kv_head, s.head_dim, from + n, {}, {}};
  f.k.resize(static_cast<size_t>(f.n * s.n_layer * s.n_kv_head * s.head_dim));
  f.v.resize(f.k.size());
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  for (auto& x : f.k) x = nd(rng);
  for (auto& x : f.v) x = nd(rng);
  for (int64_t p = from; p < from + n; ++p)
    for (int l = 0; l < s.n_layer; ++l) {
      std::vector<float> k(f.at(f.k, p, l, 0), f.at(f.k, p, l, 0) + s.n_kv_head * s.head_dim);
      std::vector<float> v(f.at(f.v, p, l, 0), f.at(f.v, p, l, 0) + s.n_kv_head * s.head_dim);
      c.store(l, 0, p, k.data(), v.data());
    }
  c.grow_seq_len(0, from + n);
  return f;
}

}  // namespace

TEST(KvCompress, LowestBlocksMatchBruteForce) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<BlockScore> scores;
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i)
      scores.push_back({{static_cast<int>(rng() % 3), static_cast<int>(rng() % 2), i},
                        static_cast<float>(rng() % 7)});  // ties on purpose
    const int64_t k = static_cast<int64_t>(rng() % (n + 2));
    std::vector<BlockScore> all = scores;
    std::sort(all.begin(), all.end(), [](const BlockScore& a, const BlockScore& b) {
      return std::make_tuple(a.score, a.ref.layer, a.ref.head, a.ref.index) <
             std::make_tuple(b.score, b.ref.layer, b.ref.head, b.ref.index);
    });
    const auto got = lowest_blocks(scores, k);
    ASSERT_EQ(static_cast<int64_t>(got.size()), std::min<int64_t>(k, n));
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].layer, all[i].ref.layer);
      EXPECT_EQ(got[i].head, all[i].ref.head);
      EXPECT_EQ(got[i].index, all[i].ref.index);
    }
  }
}

TEST(KvCompress, EvictionGivesBlocksBackPerHeadAndThePoolReusesThem) {
  KvShape shape{2, 2, 8, 128, 1};
  shape.n_pool = 6 * kB;  // 6 position blocks: 24 blocks of one (layer, head)
  KvCache c(shape, DType::F32);
  fill(c, 0, 5 * kB, 1);  // 5 position blocks in each of the 4 heads
  EXPECT_EQ(c.used_blocks(), 20);
  const KvBlockRef drop[] = {{0, 0, 1}, {0, 0, 2}, {1, 1, 0}};
  c.evict(0, drop);
  EXPECT_EQ(c.used_blocks(), 17);
  EXPECT_EQ(c.block_table(0, 0, 0).size(), 3u);
  EXPECT_EQ(c.block_table(0, 1, 1).size(), 4u);
  EXPECT_EQ(c.block_table(0, 0, 1).size(), 5u);
  EXPECT_EQ(c.evicted_rows(0, 0, 0), 2 * kB);
  EXPECT_EQ(c.evicted_rows(0, 1, 1), kB);
  EXPECT_EQ(c.evicted_rows(0, 0, 1), 0);
  EXPECT_EQ(c.view(0, 0, 0).evicted, 2 * kB);
  EXPECT_EQ(c.block_position(0, 0, 0, 1), 3);  // position blocks 0, 3, 4 remain
  EXPECT_EQ(c.min_len(0), 3 * kB);
  // The freed blocks hold the next positions: 24 - 17 = 7 free, 4 needed.
  EXPECT_EQ(c.blocks_needed(0, 6 * kB), 4);
  fill(c, 5 * kB, kB, 2);
  EXPECT_EQ(c.used_blocks(), 21);
  EXPECT_EQ(c.free_blocks(), 3);
  // Refusals: the last block, an index outside the table, a block twice; a
  // length inside the evicted part. Nothing changes.
  const KvBlockRef last[] = {{0, 1, 5}};
  EXPECT_THROW(c.evict(0, last), Error);
  const KvBlockRef outside[] = {{0, 0, 9}};
  EXPECT_THROW(c.evict(0, outside), Error);
  const KvBlockRef twice[] = {{1, 0, 1}, {1, 0, 1}};
  EXPECT_THROW(c.evict(0, twice), Error);
  EXPECT_EQ(c.used_blocks(), 21);
  EXPECT_THROW(c.set_seq_len(0, 2 * kB), Error);
  c.set_seq_len(0, 4 * kB + 3);  // past the evicted part: fine
  c.clear_seq(0);
  EXPECT_EQ(c.used_blocks(), 0);
  EXPECT_EQ(c.min_len(0), 0);
}

// Attention after eviction equals attention over the kept rows only, for the
// decode kernels (one token) and the tiled prompt kernel (a 64-token batch
// appended after the eviction), every Isa this CPU runs.
TEST(KvCompress, AttentionSeesEachHeadsKeptRows) {
  const int n_head = 4, n_kv = 2, d = 32;
  for (DType type : {DType::F32, DType::F16}) {
    for (Isa isa : supported_isas()) {
      KvCache c(KvShape{1, n_kv, d, 256, 1}, type, isa);
      Filled f = fill(c, 0, 6 * kB, 3);
      const KvBlockRef drop[] = {{0, 0, 1}, {0, 0, 4}, {0, 1, 2}};
      c.evict(0, drop);
      const std::set<int64_t> gone[2] = {{1, 4}, {2}};  // position blocks evicted per kv head
      const int64_t n_new = 64;
      Filled g = fill(c, 6 * kB, n_new, 4);
      std::mt19937 rng(9);
      std::normal_distribution<float> nd;
      std::vector<float> q(static_cast<size_t>(n_new * n_head * d)), out(q.size());
      for (auto& x : q) x = nd(rng);
      std::vector<int32_t> seq(n_new, 0), pos(n_new);
      for (int64_t t = 0; t < n_new; ++t) pos[t] = static_cast<int32_t>(6 * kB + t);
      const AttentionParams p{n_head, n_kv, d, 1.0f / std::sqrt(float(d))};
      ThreadPool pool(2);
      const auto& attn = kernels::attention_kernel_set(type, kernels::AttentionAlgo::Exact, isa);
      for (int64_t batch : {n_new, int64_t{1}}) {  // tiled prompt, then one decode token (the last)
        const int64_t t0 = n_new - batch;
        attend_batch(c, 0, p, AttentionBatch{batch, seq.data() + t0, pos.data() + t0, q.data() + t0 * n_head * d,
                                             out.data() + t0 * n_head * d},
                     pool, attn);
        for (int64_t t = t0; t < n_new; ++t)
          for (int h = 0; h < n_head; ++h) {
            const int kvh = h / (n_head / n_kv);
            double max = -1e300, sum = 0;
            std::vector<double> s, o(d, 0.0);
            std::vector<int64_t> rows;
            for (int64_t r = 0; r <= pos[t]; ++r)
              if (!gone[kvh].count(r / kB)) rows.push_back(r);
            for (int64_t r : rows) {
              Filled& src = r < 6 * kB ? f : g;
              double acc = 0;
              for (int i = 0; i < d; ++i) acc += double(q[(t * n_head + h) * d + i]) * src.at(src.k, r, 0, kvh)[i];
              s.push_back(acc * p.scale);
              max = std::max(max, s.back());
            }
            for (auto& x : s) sum += (x = std::exp(x - max));
            for (size_t j = 0; j < rows.size(); ++j) {
              Filled& src = rows[j] < 6 * kB ? f : g;
              for (int i = 0; i < d; ++i) o[i] += s[j] / sum * src.at(src.v, rows[j], 0, kvh)[i];
            }
            const double tol = type == DType::F16 ? 2e-2 : 1e-4;
            for (int i = 0; i < d; ++i)
              ASSERT_NEAR(out[(t * n_head + h) * d + i], o[i], tol)
                  << dtype_name(type) << " " << isa_name(isa) << " batch " << batch << " token " << t << " head " << h;
          }
      }
    }
  }
}

// The metric is the squared softmax probability each key got, summed over the
// observed tokens and the query heads of its group.
TEST(KvCompress, ObservedMetricIsTheSumOfSquaredProbabilities) {
  const int n_head = 4, n_kv = 2, d = 16;
  KvCache c(KvShape{1, n_kv, d, 128, 1}, DType::F32);
  Filled f = fill(c, 0, 40, 7);
  const int64_t n_tok = 3;
  std::vector<float> q(static_cast<size_t>(n_tok * n_head * d)), out(q.size());
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (auto& x : q) x = nd(rng);
  std::vector<int32_t> seq(n_tok, 0), pos = {30, 35, 39};
  const AttentionParams p{n_head, n_kv, d, 0.25f};
  EvictionMetric m(1, n_kv);
  m.start(0, 35);  // observes positions 35 and 39, not 30
  ThreadPool pool(2);
  m.observe(c, 0, p, AttentionBatch{n_tok, seq.data(), pos.data(), q.data(), out.data()}, pool);
  for (int kvh = 0; kvh < n_kv; ++kvh) {
    std::vector<double> want(40, 0.0);
    for (int64_t t = 1; t < n_tok; ++t)
      for (int g = 0; g < n_head / n_kv; ++g) {
        const int h = kvh * (n_head / n_kv) + g;
        std::vector<double> s;
        double max = -1e300, sum = 0;
        for (int64_t r = 0; r <= pos[t]; ++r) {
          double acc = 0;
          for (int i = 0; i < d; ++i) acc += double(q[(t * n_head + h) * d + i]) * f.at(f.k, r, 0, kvh)[i];
          s.push_back(acc * p.scale);
          max = std::max(max, s.back());
        }
        for (auto& x : s) sum += (x = std::exp(x - max));
        for (size_t r = 0; r < s.size(); ++r) want[r] += (s[r] / sum) * (s[r] / sum);
      }
    for (int64_t r = 0; r < 40; ++r) EXPECT_NEAR(m.at(0, kvh, r), want[r], 1e-5) << "head " << kvh << " row " << r;
  }
}

// compress_sequence at rate 2 evicts held - ceil(held / 2) blocks, the lowest
// by their largest row metric, never the protected window; window mode keeps
// the first block and the most recent ones, the same number per head.
TEST(KvCompress, CompressEvictsTheLowestScoredBlocksOutsideTheWindow) {
  KvCache c(KvShape{2, 2, 8, 256, 1}, DType::F32);
  fill(c, 0, 8 * kB, 1);  // 8 position blocks x 4 heads = 32 blocks
  EvictionMetric m(2, 2);
  std::mt19937 rng(3);
  std::vector<BlockScore> want;
  KvCompressSpec spec;
  spec.mode = KvCompressSpec::Mode::Metric;
  spec.rate = 2;
  spec.protect = 32;  // position blocks 6 and 7 are protected
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 2; ++h)
      for (int64_t b = 0; b < 8; ++b) {
        float best = 0;
        for (int64_t r = b * kB; r < (b + 1) * kB; ++r) {
          const float v = static_cast<float>(rng() % 1000) / 1000.0f;
          m.add(l, h, r, v);
          best = std::max(best, v);
        }
        if (b < 6) want.push_back({{l, h, b}, best});
      }
  const auto got = compress_sequence(c, 0, spec, &m);
  const auto expect = lowest_blocks(want, 32 - 16);
  ASSERT_EQ(got.size(), expect.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].layer, expect[i].layer);
    EXPECT_EQ(got[i].head, expect[i].head);
    EXPECT_EQ(got[i].index, expect[i].index);
  }
  EXPECT_EQ(c.used_blocks(), 16);

  KvCache w(KvShape{2, 2, 8, 256, 1}, DType::F32);
  fill(w, 0, 8 * kB, 1);
  KvCompressSpec win;
  win.mode = KvCompressSpec::Mode::Window;
  win.rate = 4;
  compress_sequence(w, 0, win, nullptr);
  // Rate 4 asks to keep 8 of 32; the sinks and the protected window (position
  // blocks 6 and 7) stay in every head: 3 per head.
  EXPECT_EQ(w.used_blocks(), 12);
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 2; ++h) {
      ASSERT_EQ(w.block_table(0, l, h).size(), 3u);
      EXPECT_EQ(w.block_position(0, l, h, 0), 0);  // the sinks
      EXPECT_EQ(w.block_position(0, l, h, 1), 6);  // the most recent
      EXPECT_EQ(w.block_position(0, l, h, 2), 7);
    }
}

// A second compression (a chat turn's prompt) keeps 1/rate of the whole
// length, not 1/rate of what the first one left.
TEST(KvCompress, ARateDoesNotCompoundOverPrompts) {
  KvCache c(KvShape{1, 2, 8, 512, 1}, DType::F32);
  fill(c, 0, 8 * kB, 1);
  KvCompressSpec spec;
  spec.mode = KvCompressSpec::Mode::Metric;
  spec.rate = 2;
  spec.protect = 16;
  compress_sequence(c, 0, spec, nullptr);
  EXPECT_EQ(c.used_blocks(), 2 * 4);  // 8 position blocks x 2 heads, half kept
  fill(c, 8 * kB, 8 * kB, 2);         // 8 more position blocks: 4 + 8 held per head
  compress_sequence(c, 0, spec, nullptr);
  EXPECT_EQ(c.used_blocks(), 2 * 8);  // half of 16 per head, not half of 12
}

}  // namespace kestrel
