// The compressor of one sequence (runtime/kv_compressor.h) on a bare KvCache:
// the spec the switches ask for, the blocks a prompt's scores keep (checked
// against a brute-force ranking), and decode-time eviction under a budget,
// which takes the least attended prompt blocks first, then the oldest
// generated ones, and keeps the sequence under decode_cap_blocks().
#include "runtime/kv_compressor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <tuple>
#include <vector>

namespace kestrel {
namespace {

using Mode = KvCompressConfig::Mode;

TEST(KvCompressor, SpecOfTheSwitches) {
  EXPECT_FALSE(kv_compress_spec({}).on());
  const KvCompressSpec budget_alone = kv_compress_spec({Mode::Off, 0, 64});
  EXPECT_EQ(budget_alone.mode, KvCompressSpec::Mode::Metric);
  EXPECT_EQ(budget_alone.budget, 64);
  EXPECT_EQ(budget_alone.rate, 0);
  EXPECT_EQ(kv_compress_spec({Mode::Metric, 4, 0}).rate, 4);
  EXPECT_EQ(kv_compress_spec({Mode::Window, 0, 0}).rate, 4);    // window: 1/4 without a budget
  EXPECT_EQ(kv_compress_spec({Mode::Window, 0, 100}).rate, 0);  // window: to the budget
  EXPECT_EQ(kv_compress_spec({Mode::Window, 8, 100}).rate, 8);
}

constexpr int kHeads = 2;
constexpr int kDim = 32;

// Stores position pos (any values: the ranking reads scores, not keys).
void store(KvCache& cache, int64_t pos) {
  std::vector<float> kv(static_cast<size_t>(kHeads) * kDim, 0.25f);
  cache.store(0, 0, pos, kv.data(), kv.data());
  cache.grow_seq_len(0, pos + 1);
}

// The position blocks each head holds.
std::set<std::pair<int, int64_t>> held(const KvCache& cache) {
  std::set<std::pair<int, int64_t>> out;
  for (int h = 0; h < kHeads; ++h)
    for (size_t i = 0; i < cache.block_table(0, 0, h).size(); ++i)
      out.insert({h, cache.block_position(0, 0, h, static_cast<int64_t>(i))});
  return out;
}

TEST(KvCompressor, DecodeEvictsTheLeastAttendedPromptBlocksThenTheOldestGenerated) {
  KvShape shape;
  shape.n_layer = 1;
  shape.n_kv_head = kHeads;
  shape.head_dim = kDim;
  shape.n_ctx = 512;
  KvCache cache(shape, DType::F32, Isa::Scalar);
  // A prompt of 160 positions: 10 blocks per head, scores per (head, block), all distinct.
  const float score[kHeads][10] = {{5, 1, 7, 3, 8, 2, 6, 4, 9, 9},
                                   {2.5f, 8.5f, 4.5f, 6.5f, 1.5f, 7.5f, 3.5f, 5.5f, 9, 9}};
  for (int64_t p = 0; p < 160; ++p) store(cache, p);
  SequenceCompressor c(kv_compress_spec({Mode::Off, 0, 64}), 1, kHeads);
  EvictionMetric* m = c.start_prompt(0, 160);
  ASSERT_NE(m, nullptr);
  for (int h = 0; h < kHeads; ++h)
    for (int64_t r = 0; r < 160; ++r) m->add(0, h, r, score[h][r / 16]);
  const EvictionCount n = c.after_prompt(cache, 0);

  // Brute force: blocks below (160 - 32) / 16 = 8 may go; the budget keeps
  // 64 / 16 = 4 blocks per head on average, 8 in all, of which the 4 at
  // positions 8 and 9 are protected: the 4 best scored candidates stay.
  std::vector<std::tuple<float, int, int64_t>> candidates;
  for (int h = 0; h < kHeads; ++h)
    for (int64_t b = 0; b < 8; ++b) candidates.emplace_back(score[h][b], h, b);
  std::sort(candidates.rbegin(), candidates.rend());
  std::set<std::pair<int, int64_t>> want = {{0, 8}, {0, 9}, {1, 8}, {1, 9}};
  for (int i = 0; i < 4; ++i) want.insert({std::get<1>(candidates[i]), std::get<2>(candidates[i])});
  EXPECT_EQ(held(cache), want);
  EXPECT_EQ(n.evicted, 12);
  EXPECT_EQ(n.freed, 12);

  // Decode: the next position takes a block per head (10 held, the trigger):
  // the two least scored prompt blocks still held go.
  const int64_t cap = c.decode_cap_blocks(shape);
  EXPECT_EQ(c.trigger_blocks(shape), 10);
  store(cache, 160);
  EXPECT_EQ(c.after_decode(cache, 0).evicted, 2);
  for (int i = 2; i < 4; ++i) want.erase({std::get<1>(candidates[i]), std::get<2>(candidates[i])});
  want.insert({0, 10});
  want.insert({1, 10});
  EXPECT_EQ(held(cache), want);

  // Decoding on: every prompt block below the protected window goes before
  // any generated one, then the generated ones oldest first; never above the cap.
  int64_t most = 0;
  for (int64_t p = 161; p < 320; ++p) {
    store(cache, p);
    const int seqs[] = {0};
    most = std::max(most, cache.blocks_held(seqs));
    c.after_decode(cache, 0);
    const auto now = held(cache);
    // Once a generated block (position block 10 on) has gone, no prompt block is left.
    bool generated_gone = false, prompt_left = false;
    for (int h = 0; h < kHeads; ++h)
      for (int64_t pb = 10; pb <= p / 16; ++pb) generated_gone = generated_gone || !now.count({h, pb});
    for (const auto& [h, pb] : now) prompt_left = prompt_left || pb < 10;
    EXPECT_FALSE(generated_gone && prompt_left) << "a prompt block outlived a generated one at position " << p;
    if (p == 319) {
      // 320 positions: blocks 18, 19 protected (and 17 partly); the budget's 8
      // blocks in all are the newest: 16..19 in each head.
      EXPECT_EQ(now, (std::set<std::pair<int, int64_t>>{
                         {0, 16}, {0, 17}, {0, 18}, {0, 19}, {1, 16}, {1, 17}, {1, 18}, {1, 19}}));
    }
  }
  EXPECT_LE(most, cap);
}

}  // namespace
}  // namespace kestrel
