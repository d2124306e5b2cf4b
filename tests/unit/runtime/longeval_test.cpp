// Pass-key retrieval (runtime/longeval.h) on the tiny random model: the prompt
// builder, the answer parser, the schedule, and prefix reuse against fresh
// evaluation. No timing.
#include "runtime/longeval.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

TEST(LongevalAnswer, FirstFiveDigitNumber) {
  EXPECT_EQ(first_five_digit_number(" 12345. Remember it."), "12345");
  EXPECT_EQ(first_five_digit_number("12345"), "12345");
  EXPECT_EQ(first_five_digit_number(" is 01234."), "01234");  // leading zero kept
  EXPECT_EQ(first_five_digit_number(" 00000"), "00000");
  EXPECT_EQ(first_five_digit_number(" no number here"), "");
  EXPECT_EQ(first_five_digit_number(""), "");
  EXPECT_EQ(first_five_digit_number(" 1234 then 56789"), "56789");    // shorter run skipped
  EXPECT_EQ(first_five_digit_number(" 123456 then 98765"), "98765");  // longer run is not a 5-digit number
  EXPECT_EQ(first_five_digit_number(" 123456"), "");
  EXPECT_EQ(first_five_digit_number("key:54321,12345"), "54321");
  EXPECT_EQ(first_five_digit_number("1 2 3 4 5"), "");
}

TEST(LongevalSchedule, SpreadOverDepthsAndDeterministic) {
  const auto a = passkey_schedule(50, 10, 7);
  const auto b = passkey_schedule(50, 10, 7);
  const auto c = passkey_schedule(50, 10, 8);
  ASSERT_EQ(a.size(), 50u);
  std::vector<int> per_depth(10, 0);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, static_cast<int>(i));
    EXPECT_EQ(a[i].key, b[i].key);
    EXPECT_EQ(a[i].depth_index, b[i].depth_index);
    differs = differs || a[i].key != c[i].key;
    ASSERT_EQ(a[i].key.size(), 5u);
    EXPECT_EQ(first_five_digit_number(a[i].key), a[i].key);
    ++per_depth[a[i].depth_index];
    EXPECT_DOUBLE_EQ(a[i].depth, a[i].depth_index / 9.0);
  }
  EXPECT_TRUE(differs);
  for (int n : per_depth) EXPECT_EQ(n, 5);
  EXPECT_DOUBLE_EQ(a[0].depth, 0.0);
  EXPECT_DOUBLE_EQ(a[9].depth, 1.0);

  // Uneven: counts per depth differ by at most one.
  const auto u = passkey_schedule(23, 10, 1);
  std::vector<int> cnt(10, 0);
  for (const auto& t : u) ++cnt[t.depth_index];
  EXPECT_EQ(*std::max_element(cnt.begin(), cnt.end()) - *std::min_element(cnt.begin(), cnt.end()), 1);

  const auto one = passkey_schedule(3, 1, 1);
  for (const auto& t : one) EXPECT_DOUBLE_EQ(t.depth, 0.0);
  EXPECT_THROW(passkey_schedule(0, 10, 1), Error);
  EXPECT_THROW(passkey_schedule(10, 0, 1), Error);
}

class LongevalModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::TinyModelSpec spec;
    spec.n_ctx_train = 1024;
    tiny_ = new testing::LoadedTinyModel("longeval", spec);
  }
  static void TearDownTestSuite() {
    delete tiny_;
    tiny_ = nullptr;
  }
  static const Model& model() { return *tiny_->model; }
  static testing::LoadedTinyModel* tiny_;
};
testing::LoadedTinyModel* LongevalModel::tiny_ = nullptr;

TEST_F(LongevalModel, PromptPutsTheKeyAtTheDepth) {
  PasskeyPromptBuilder b(model().tokenizer());
  const std::vector<std::string> keys = {"12345"};
  const int n = b.max_filler(800, 8, keys);
  ASSERT_GT(n, 20);
  const int64_t sentence = b.max_sentence_tokens();
  for (double depth : {0.0, 0.1, 0.25, 0.5, 0.77, 1.0}) {
    const PasskeyPrompt p = b.build(n, depth, "12345");
    const double want = p.filler_begin + depth * static_cast<double>(p.filler_tokens);
    EXPECT_LE(std::abs(static_cast<double>(p.key_begin) - want), static_cast<double>(sentence)) << depth;
    // The key's digits are in the prompt at key_begin.
    const std::string key_text =
        model().tokenizer().decode(std::span<const int32_t>(p.tokens).subspan(p.key_begin, p.key_end - p.key_begin));
    EXPECT_NE(key_text.find("12345"), std::string::npos) << key_text;
    EXPECT_EQ(first_five_digit_number(model().tokenizer().decode(p.tokens)), "12345");
  }
  EXPECT_EQ(b.build(n, 0.0, "12345").key_begin, b.build(n, 0.0, "12345").filler_begin);
  const PasskeyPrompt last = b.build(n, 1.0, "12345");
  EXPECT_EQ(last.key_begin, last.filler_begin + last.filler_tokens);
  EXPECT_THROW(b.build(n, 1.5, "12345"), Error);
}

TEST_F(LongevalModel, PromptFillsTheContext) {
  PasskeyPromptBuilder b(model().tokenizer());
  const std::vector<std::string> keys = {"12345", "99999", "10000"};
  for (int64_t ctx : {300, 512, 1000}) {
    const int n_answer = 8;
    const int n = b.max_filler(ctx, n_answer, keys);
    ASSERT_GT(n, 0) << ctx;
    for (const auto& k : keys) {
      for (double depth : {0.0, 0.5, 1.0}) {
        const PasskeyPrompt p = b.build(n, depth, k);
        const int64_t size = static_cast<int64_t>(p.tokens.size());
        EXPECT_LE(size + n_answer, ctx);
        // Within one filler sentence of full.
        EXPECT_GT(size + n_answer + b.max_sentence_tokens(), ctx) << ctx << " " << k;
        EXPECT_EQ(size, b.fixed_tokens(k) + b.filler_tokens(n));
      }
    }
  }
  EXPECT_EQ(b.max_filler(20, 8, keys), -1);  // not even the instruction fits
}

TEST_F(LongevalModel, PromptsShareTheirPrefixUpToTheKey) {
  PasskeyPromptBuilder b(model().tokenizer());
  const int n = 60;
  const PasskeyPrompt deep = b.build(n, 1.0, "11111");
  const PasskeyPrompt mid = b.build(n, 0.5, "22222");
  ASSERT_LT(mid.key_begin, deep.key_begin);
  for (int64_t i = 0; i < mid.key_begin; ++i) ASSERT_EQ(deep.tokens[i], mid.tokens[i]) << i;
}

TEST_F(LongevalModel, RefusesContextsItCannotRun) {
  LongevalOptions o;
  o.n_trials = 2;
  o.n_depths = 2;
  o.engine.n_threads = 2;
  o.n_ctx = {2048};  // trained context is 1024
  try {
    check_longeval_options(model(), o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1024"), std::string::npos) << e.what();
  }
  o.n_ctx = {30};
  try {
    check_longeval_options(model(), o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least"), std::string::npos) << e.what();
  }
  o.n_ctx = {512};
  o.n_answer = 3;
  EXPECT_THROW(check_longeval_options(model(), o), Error);
  o.n_answer = 8;
  o.n_trials = 0;
  EXPECT_THROW(check_longeval_options(model(), o), Error);
  o.n_trials = 2;
  EXPECT_NO_THROW(check_longeval_options(model(), o));
}

// A session rolled back to a shared prefix gives the logits of a fresh one.
TEST_F(LongevalModel, PrefixReuseMatchesFreshEvaluation) {
  PasskeyPromptBuilder b(model().tokenizer());
  const int n = b.max_filler(700, 8, std::vector<std::string>{"12345"});
  const PasskeyPrompt first = b.build(n, 0.8, "31415");
  const PasskeyPrompt second = b.build(n, 0.3, "27182");
  SessionOptions so;
  so.n_ctx = 700;
  so.n_batch = 64;
  so.engine.n_threads = 2;
  Session reused(model(), so);
  reused.set_history(first.tokens);
  const auto ra = reused.set_history(second.tokens);
  const std::vector<float> a(ra.begin(), ra.end());
  Session fresh(model(), so);
  const auto f = fresh.set_history(second.tokens);
  ASSERT_EQ(a.size(), f.size());
  float max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(a[i] - f[i]));
  EXPECT_LT(max_diff, 1e-3f);
  EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(), std::max_element(f.begin(), f.end()) - f.begin());
}

// The whole run, with and without reuse: the same greedy tokens, fewer tokens evaluated.
TEST_F(LongevalModel, RunWithReuseEqualsFreshRuns) {
  LongevalOptions o;
  o.n_ctx = {300, 520};
  o.n_trials = 7;
  o.n_depths = 4;
  o.seed = 3;
  o.n_batch = 96;
  o.engine.n_threads = 2;
  o.reuse_prefix = true;
  int calls = 0;
  const LongevalResult reused = run_longeval(model(), o, [&](const LongevalProgress& p) {
    ++calls;
    EXPECT_LE(p.passed, p.trial);
    EXPECT_GE(p.eta_seconds, 0.0);
  });
  EXPECT_EQ(calls, 14);
  o.reuse_prefix = false;
  const LongevalResult fresh = run_longeval(model(), o);
  ASSERT_EQ(reused.contexts.size(), 2u);
  for (size_t c = 0; c < 2; ++c) {
    const auto& rc = reused.contexts[c];
    const auto& fc = fresh.contexts[c];
    EXPECT_EQ(rc.n_ctx, o.n_ctx[c]);
    ASSERT_EQ(rc.trials.size(), 7u);
    int trials = 0;
    for (const auto& d : rc.depths) trials += d.trials;
    EXPECT_EQ(trials, 7);
    for (size_t i = 0; i < 7; ++i) {
      EXPECT_EQ(rc.trials[i].trial.key, fc.trials[i].trial.key);
      EXPECT_EQ(rc.trials[i].generated, fc.trials[i].generated) << "context " << rc.n_ctx << " trial " << i;
      EXPECT_EQ(rc.trials[i].pass, fc.trials[i].pass);
      EXPECT_EQ(fc.trials[i].evaluated_tokens, fc.trials[i].prompt_tokens);
      EXPECT_LE(rc.trials[i].prompt_tokens + o.n_answer, rc.n_ctx);
      EXPECT_GT(rc.trials[i].kv.held, 0);
      EXPECT_GE(rc.trials[i].kv.tokens, rc.trials[i].prompt_tokens);
    }
    EXPECT_LT(rc.evaluated_tokens_total, fc.evaluated_tokens_total);
    EXPECT_EQ(rc.prompt_tokens_total, fc.prompt_tokens_total);
  }
  // The reports hold the contexts.
  const std::string md = format_longeval_markdown(reused);
  EXPECT_NE(md.find("c=300"), std::string::npos);
  EXPECT_NE(md.find("c=520"), std::string::npos);
  const std::string js = format_longeval_json(reused);
  EXPECT_NE(js.find("\"n_ctx\": 520"), std::string::npos);
  EXPECT_NE(js.find("\"switches\""), std::string::npos);
}

TEST_F(LongevalModel, KvBytesCountHeldBlocks) {
  SessionOptions so;
  so.n_ctx = 256;
  so.engine.n_threads = 2;
  Session s(model(), so);
  const KvBytes empty = measure_kv_bytes(s.cache());
  EXPECT_EQ(empty.held, 0);
  EXPECT_EQ(empty.tokens, 0);
  std::vector<int32_t> toks(40, 'a' + 1);
  s.set_history(toks);
  const KvBytes b = measure_kv_bytes(s.cache());
  // 40 tokens: 3 blocks of 16; F16 K and V, 2 layers, 1 kv head, head dim 64.
  EXPECT_EQ(b.tokens, 40);
  EXPECT_EQ(b.held, 3 * 16 * 2 * 1 * 64 * 2 * 2);
  EXPECT_GE(b.resident, b.held);
  EXPECT_LE(b.resident, b.reserved);
}

}  // namespace
}  // namespace kestrel
