// Long-document perplexity (runtime/long_ppl.h) on the tiny model: WikiText
// articles, documents joined to a length, chunked evaluation equal to one
// whole evaluation without eviction, and KV-Compress between chunks holding
// the budget it is given, the same for the metric and window.
#include "runtime/long_ppl.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/perplexity_math.h"
#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

testing::LoadedTinyModel& tiny() {
  static testing::LoadedTinyModel l("long_ppl");
  return l;
}

TEST(LongPpl, ArticlesStartAtLevelOneHeadings) {
  const std::string text =
      " \r\n = Alpha = \r\n \r\n Alpha text .\r\n \r\n = = History = = \r\n More alpha .\r\n = Beta = \r\n Beta text "
      ".\r\n";
  const auto a = wikitext_articles(text);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].rfind(" = Alpha = ", 0), 0u);
  EXPECT_NE(a[0].find("= = History = ="), std::string::npos);
  EXPECT_NE(a[0].find("More alpha"), std::string::npos);
  EXPECT_EQ(a[1], " = Beta = \r\n Beta text .\r\n");
}

std::vector<std::string> articles(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(" = Article " + std::to_string(i) + " = \n " + testing::tiny_text() + "\n");
  return out;
}

TEST(LongPpl, DocumentsJoinArticlesToTheirLength) {
  const Tokenizer& tok = tiny().model->tokenizer();
  const auto arts = articles(7);
  const int64_t one = static_cast<int64_t>(tok.encode(arts[0], true, false).size());
  const auto docs = join_documents(tok, arts, one + 1, 2 * one + 5, 0);
  // Two articles make one document (one is too short), cut to the maximum; the 7th alone is dropped.
  ASSERT_EQ(docs.size(), 3u);
  for (const auto& d : docs) {
    EXPECT_GE(static_cast<int64_t>(d.size()), one + 1);
    EXPECT_LE(static_cast<int64_t>(d.size()), 2 * one + 5);
  }
  EXPECT_EQ(docs[0], tok.encode(arts[0] + arts[1], true, false));
  EXPECT_EQ(join_documents(tok, arts, one + 1, 2 * one + 5, 2).size(), 2u);
  EXPECT_THROW(join_documents(tok, arts, 10, 5, 0), Error);
}

std::vector<std::vector<int32_t>> two_docs() {
  const Tokenizer& tok = tiny().model->tokenizer();
  return join_documents(tok, articles(4), 300, 480, 2);
}

// Without eviction the chunks see what one evaluation of the whole document
// sees: the NLL of the scored tokens from one Session pass is the reference.
TEST(LongPpl, WithoutEvictionChunksScoreWhatOneWholePassScores) {
  const auto docs = two_docs();
  ASSERT_EQ(docs.size(), 2u);
  LongPplOptions o;
  o.chunk = 64;
  o.engine.n_threads = 1;
  const LongPplResult r = run_long_ppl(*tiny().model, docs, o);
  double nll = 0;
  int64_t scored = 0;
  const int64_t n_vocab = tiny().model->config().n_vocab;
  for (const auto& d : docs) {
    SessionOptions so;
    so.n_ctx = static_cast<int64_t>(d.size());
    so.engine.n_threads = 1;
    Session s(*tiny().model, so);
    const std::vector<float>& logits = s.append_all_logits(d);
    for (size_t t = 64; t < d.size(); ++t) {
      const std::span<const float> row(logits.data() + (t - 1) * n_vocab, static_cast<size_t>(n_vocab));
      nll += row_nll(row_softmax(row), row, d[t]);
      ++scored;
    }
  }
  EXPECT_EQ(r.scored, scored);
  EXPECT_NEAR(r.ppl, std::exp(nll / static_cast<double>(scored)), 1e-4 * r.ppl);
  for (const auto& d : r.docs) {
    EXPECT_EQ(d.budget, 0);
    EXPECT_EQ(d.evicted_blocks, 0);
    EXPECT_EQ(d.kv_held_max, d.kv_held_full);
  }
}

// kvcompress=4: each document's budget is a quarter of it; after every chunk
// the cache holds at most that (or the blocks never evicted: the protected 32
// positions, the end's block, window's first block), the same bytes for the
// metric and for window, and the scores move.
TEST(LongPpl, ARateBecomesABudgetHeldBetweenChunksEquallyByMetricAndWindow) {
  const auto docs = two_docs();
  LongPplOptions o;
  o.chunk = 64;
  o.engine.n_threads = 1;
  const LongPplResult full = run_long_ppl(*tiny().model, docs, o);
  o.engine.kv_compress = {KvCompressConfig::Mode::Metric, 4, 0};
  const LongPplResult metric = run_long_ppl(*tiny().model, docs, o);
  o.engine.kv_compress = {KvCompressConfig::Mode::Window, 4, 0};
  const LongPplResult window = run_long_ppl(*tiny().model, docs, o);
  EXPECT_EQ(metric.engine.kv_compress.rate, 4);  // reported as asked
  const auto& shape = tiny().model->config();
  const int64_t per_pb = int64_t{shape.n_layer} * shape.n_kv_head;
  for (size_t i = 0; i < docs.size(); ++i) {
    const auto n = static_cast<int64_t>(docs[i].size());
    for (const LongPplResult* r : {&metric, &window}) {
      const LongPplDoc& d = r->docs[i];
      EXPECT_EQ(d.budget, (n + 3) / 4);
      EXPECT_EQ(d.scored, full.docs[i].scored);
      EXPECT_GT(d.evicted_blocks, 0);
      const int64_t block_bytes = full.docs[i].kv_held_full / ((n + 15) / 16 * per_pb);
      const int64_t kept_pb = std::max<int64_t>((d.budget + 15) / 16, 2 + 2);
      EXPECT_LE(d.kv_held_max, kept_pb * per_pb * block_bytes);
      EXPECT_LT(d.kv_held_max, full.docs[i].kv_held_full);
    }
    EXPECT_EQ(metric.docs[i].kv_held_max, window.docs[i].kv_held_max) << "equal budgets, equal bytes";
  }
  EXPECT_NE(metric.ppl, full.ppl);
  EXPECT_NE(window.ppl, full.ppl);
  EXPECT_NE(metric.ppl, window.ppl);
}

}  // namespace
}  // namespace kestrel
