// A session with KV-Compress: a long prompt is compressed once it is cached
// (blocks back to the pool, the same logits for the prompt itself), generation
// continues over the shorter heads, and a new history that cuts into the
// evicted part starts over instead of failing.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {

TEST(SessionKvCompress, CompressesAfterThePromptAndKeepsGenerating) {
  testing::LoadedTinyModel tiny("session_kvc");
  std::vector<int32_t> prompt;
  for (int i = 0; i < 200; ++i) prompt.push_back(3 + (i * 7) % 50);
  SessionOptions plain;
  plain.n_ctx = 512;
  SessionOptions comp = plain;
  comp.engine.kv_compress = {KvCompressConfig::Mode::Metric, 4, 0};  // kvcompress=4
  Session a(*tiny.model, plain), b(*tiny.model, comp);
  const auto la = a.set_history(prompt);
  const std::vector<float> first_a(la.begin(), la.end());
  const auto lb = b.set_history(prompt);
  // The prompt's own logits come before the eviction.
  EXPECT_EQ(std::vector<float>(lb.begin(), lb.end()), first_a);
  EXPECT_GT(b.evicted_blocks(), 0);
  EXPECT_LT(b.cache().used_blocks(), a.cache().used_blocks());
  EXPECT_GT(b.cache().min_len(0), 0);
  // Decoding continues (over fewer rows per head).
  const int32_t next = 5;
  const auto after = b.append(std::span<const int32_t>(&next, 1));
  EXPECT_EQ(after.size(), static_cast<size_t>(tiny.model->config().n_vocab));
  EXPECT_EQ(b.n_past(), 201);
  // A history that shares only the first 20 tokens: evaluated from scratch,
  // as a fresh session does.
  std::vector<int32_t> other(prompt.begin(), prompt.begin() + 20);
  other.push_back(9);
  const auto lo = b.set_history(other);
  Session fresh(*tiny.model, plain);
  const auto want = fresh.set_history(other);
  EXPECT_EQ(std::vector<float>(lo.begin(), lo.end()), std::vector<float>(want.begin(), want.end()));
}

}  // namespace kestrel
