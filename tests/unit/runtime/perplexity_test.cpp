// Perplexity of the tiny model against a reference computed here from the
// logits of Session::append_all_logits, with the chunking rule written out.
#include "runtime/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "runtime/perplexity_math.h"
#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

SessionOptions session_opts(int n_ctx, int n_batch) {
  SessionOptions o;
  o.n_ctx = n_ctx;
  o.engine.n_threads = 2;
  o.n_batch = n_batch;
  return o;
}

// -log softmax(row)[target] in long double, straight from the definition.
long double reference_nll(const float* row, int n_vocab, int32_t target) {
  long double mx = row[0];
  for (int i = 1; i < n_vocab; ++i) mx = std::max<long double>(mx, row[i]);
  long double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<long double>(row[i]) - mx);
  return std::log(sum) + mx - row[target];
}

struct Reference {
  std::vector<long double> nll;   // every scored token, in order
  std::vector<double> running;    // PPL after each chunk
  double ppl = 0, error = 0;
};

// The rule, spelled out: chunk c is tokens [c*n_ctx, (c+1)*n_ctx); its first token
// becomes BOS when the vocab adds BOS; row j of its logits predicts token j+1;
// rows n_ctx/2 .. n_ctx-2 are scored.
// The logits come from batches of `n_batch` tokens, as in the run under test:
// from 64 tokens per batch attention takes its tiled form (kv/attention_batch.h),
// whose last bits differ, and this test checks the bookkeeping, not that.
Reference reference_ppl(const Model& m, const std::vector<int32_t>& tokens, int n_ctx, int n_chunks, int n_batch) {
  const int n_vocab = m.config().n_vocab;
  Reference r;
  long double sum = 0, sum2 = 0;
  for (int c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    const std::vector<int32_t> original = chunk;
    if (m.tokenizer().spec().add_bos) chunk[0] = m.tokenizer().bos();
    Session s(m, session_opts(n_ctx, n_batch));
    const std::vector<float> logits = s.append_all_logits(chunk);
    for (int j = n_ctx / 2; j <= n_ctx - 2; ++j) {
      const long double v = reference_nll(logits.data() + static_cast<size_t>(j) * n_vocab, n_vocab, original[j + 1]);
      r.nll.push_back(v);
      sum += v;
      sum2 += v * v;
    }
    r.running.push_back(static_cast<double>(std::exp(sum / r.nll.size())));
  }
  const long double n = r.nll.size();
  const long double mean = sum / n;
  r.ppl = static_cast<double>(std::exp(mean));
  r.error = static_cast<double>(std::exp(mean) * std::sqrt((sum2 / n - mean * mean) / (n - 1)));
  return r;
}

TEST(Perplexity, MatchesReferenceFromAllLogits) {
  testing::LoadedTinyModel tiny("ppl_ref", {});
  const Model& m = *tiny.model;
  const std::vector<int32_t> tokens = tokenize_for_perplexity(m.tokenizer(), testing::tiny_text());
  ASSERT_EQ(tokens, m.tokenizer().encode(testing::tiny_text(), true, false));
  const int n_ctx = 64;
  ASSERT_GE(tokens.size(), 4u * n_ctx) << "the text should give several chunks";

  PerplexityOptions o;
  o.n_ctx = n_ctx;
  o.n_batch = 24;  // batches of 24 split each chunk in three
  o.engine.n_threads = 2;
  int calls = 0;
  const PerplexityResult r = run_perplexity(m, tokens, o, nullptr, nullptr, [&](const PerplexityProgress& p) {
    ++calls;
    EXPECT_EQ(p.chunk, calls);
    EXPECT_EQ(p.kl, nullptr);
  });

  const int n_chunks = static_cast<int>(tokens.size() / n_ctx);
  const Reference ref = reference_ppl(m, tokens, n_ctx, n_chunks, 24);
  EXPECT_EQ(r.plan.n_chunks, n_chunks);
  EXPECT_EQ(calls, n_chunks);
  EXPECT_EQ(r.n_scored, static_cast<int64_t>(n_chunks) * (n_ctx - 1 - n_ctx / 2));
  EXPECT_EQ(r.n_scored, static_cast<int64_t>(ref.nll.size()));
  EXPECT_NEAR(r.ppl, ref.ppl, 1e-5 * ref.ppl);
  EXPECT_NEAR(r.ppl_error, ref.error, 1e-4 * ref.error);
  ASSERT_EQ(r.running_ppl.size(), ref.running.size());
  for (size_t i = 0; i < ref.running.size(); ++i) EXPECT_NEAR(r.running_ppl[i], ref.running[i], 1e-5 * ref.running[i]);
  // A random model is far from the data but still a proper distribution.
  EXPECT_GT(r.ppl, 1.0);
  EXPECT_LT(r.ppl, 10.0 * m.config().n_vocab);

  // --chunks limits the run to the first chunks.
  o.n_chunks = 2;
  const PerplexityResult r2 = run_perplexity(m, tokens, o);
  EXPECT_EQ(r2.plan.n_chunks, 2);
  EXPECT_NEAR(r2.ppl, ref.running[1], 1e-5 * ref.running[1]);
}

// Two chunks of 8 tokens (plus a tail that must be ignored), BOS added: check by
// hand which tokens are scored, with which logits, and which tokens matter.
TEST(Perplexity, TwoChunkRuleByHand) {
  testing::TinyModelSpec spec;
  spec.add_bos = true;
  testing::LoadedTinyModel tiny("ppl_hand", spec);
  const Model& m = *tiny.model;
  const int32_t bos = m.tokenizer().bos();
  ASSERT_EQ(bos, 0);
  const int n_ctx = 8;
  // 2 chunks + 5 tail tokens. Chunk 1 starts with BOS (as tokenized); chunk 2's
  // first token (id 77) must be evaluated as BOS.
  std::vector<int32_t> tokens = {bos, 40, 41, 42, 43, 44, 45, 46, 77, 50, 51, 52, 53, 54, 55, 56, 60, 61, 62, 63, 64};

  const PerplexityPlan plan = plan_perplexity(tokens.size(), n_ctx, -1);
  EXPECT_EQ(plan.n_chunks, 2);
  EXPECT_EQ(plan.first, 4);
  EXPECT_EQ(plan.n_scored_per_chunk(), 3);

  // Expected: in each chunk, logits at positions 4, 5, 6 score tokens 5, 6, 7.
  const int n_vocab = m.config().n_vocab;
  long double sum = 0;
  for (int c = 0; c < 2; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    chunk[0] = bos;
    Session s(m, session_opts(n_ctx, n_ctx));
    const std::vector<float> logits = s.append_all_logits(chunk);
    for (int pos = 4; pos <= 6; ++pos) sum += reference_nll(&logits[pos * n_vocab], n_vocab, chunk[pos + 1]);
  }
  const double expected = static_cast<double>(std::exp(sum / 6));

  PerplexityOptions o;
  o.n_ctx = n_ctx;
  o.n_batch = 3;
  o.engine.n_threads = 2;
  const PerplexityResult r = run_perplexity(m, tokens, o);
  EXPECT_EQ(r.n_scored, 6);
  EXPECT_NEAR(r.ppl, expected, 1e-5 * expected);

  auto ppl_with = [&](size_t index, int32_t value) {
    std::vector<int32_t> t = tokens;
    t[index] = value;
    return run_perplexity(m, t, o).ppl;
  };
  // Chunk 2's first token is replaced by BOS, and the tail is never read: no effect.
  EXPECT_EQ(ppl_with(8, 99), r.ppl);
  EXPECT_EQ(ppl_with(18, 99), r.ppl);
  // An unscored first-half token is context: it changes the result...
  EXPECT_NE(ppl_with(11, 99), r.ppl);
  // ...and so does a scored token.
  EXPECT_NE(ppl_with(15, 99), r.ppl);
}

TEST(Perplexity, PlanRejectsShortInputAndTinyContexts) {
  EXPECT_THROW(plan_perplexity(100, 128, -1), Error);
  EXPECT_THROW(plan_perplexity(100, 2, -1), Error);
  EXPECT_THROW(plan_perplexity(100, 10, 0), Error);
  const PerplexityPlan p = plan_perplexity(1000, 128, -1);
  EXPECT_EQ(p.n_chunks, 7);
  EXPECT_EQ(p.n_scored_per_chunk(), 63);
  EXPECT_EQ(plan_perplexity(1000, 128, 3).n_chunks, 3);
  EXPECT_EQ(plan_perplexity(1000, 128, 50).n_chunks, 7);
}

TEST(Perplexity, FormatsLikeLlamaPerplexity) {
  EXPECT_EQ(format_running_ppl(3, 12.345678), "[3]12.3457,");
  PerplexityResult r;
  r.ppl = 21.5;
  r.ppl_error = 0.123456;
  EXPECT_EQ(format_final_estimate(r), "Final estimate: PPL = 21.5000 +/- 0.12346");
}

TEST(PerplexityMath, TopKOrderAndBuckets) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f, 3.0f};
  const auto top = top_k_ids(logits, 4);
  EXPECT_EQ(top, (std::vector<int32_t>{1, 2, 5, 0}));  // ties: lower id first
  EXPECT_EQ(top_k_ids(logits, 10).size(), logits.size());
  const RowSoftmax s = row_softmax(logits);
  EXPECT_EQ(s.argmax, 1);
  float lp[4], rest = 0;
  bucket_logprobs(logits, s, top, lp, &rest);
  // Closed form: p(i) = e^{l_i} / sum e^{l}.
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(lp[i], logits[top[i]] - std::log(z), 1e-6);
  EXPECT_NEAR(rest, std::log(std::exp(-2.0) + std::exp(0.5)) - std::log(z), 1e-6);
  EXPECT_NEAR(row_nll(s, logits, 3), std::log(z) + 2.0, 1e-6);  // float exponentials, double sum
  // All ids in the buckets: nothing is left over.
  const auto all = top_k_ids(logits, 6);
  float lp6[6];
  bucket_logprobs(logits, s, all, lp6, &rest);
  EXPECT_TRUE(std::isinf(rest) && rest < 0);
}

}  // namespace
}  // namespace kestrel
