// KL divergence against a saved baseline: zero against itself, and equal to a
// direct double-precision computation on the same truncated distributions
// against a perturbed model.
#include "runtime/kl_divergence.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "runtime/perplexity.h"
#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

constexpr int kCtx = 64;

PerplexityOptions opts() {
  PerplexityOptions o;
  o.n_ctx = kCtx;
  o.engine.n_threads = 2;
  o.n_batch = 32;
  return o;
}

// [n_chunks][rows of n_vocab]: the scored rows' logits (positions n_ctx/2 .. n_ctx-2).
std::vector<std::vector<double>> scored_logits(const Model& m, const std::vector<int32_t>& tokens, int n_chunks) {
  const int n_vocab = m.config().n_vocab;
  std::vector<std::vector<double>> out;
  for (int c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * kCtx, tokens.begin() + (c + 1) * kCtx);
    SessionOptions so;
    so.n_ctx = kCtx;
    so.engine.n_threads = 2;
    so.n_batch = opts().n_batch;  // the evaluator's batches: the same kernels, the same bits
    Session s(m, so);
    const auto& l = s.append_all_logits(chunk);
    for (int j = kCtx / 2; j <= kCtx - 2; ++j) out.emplace_back(l.begin() + j * n_vocab, l.begin() + (j + 1) * n_vocab);
  }
  return out;
}

std::vector<double> log_softmax(const std::vector<double>& l) {
  const double mx = *std::max_element(l.begin(), l.end());
  double z = 0;
  for (double x : l) z += std::exp(x - mx);
  std::vector<double> out(l.size());
  for (size_t i = 0; i < l.size(); ++i) out[i] = l[i] - mx - std::log(z);
  return out;
}

// KL(P || Q) with P, Q reduced to the k most likely tokens of P plus "the rest",
// everything in double, top-k chosen by sorting.
double direct_truncated_kl(const std::vector<double>& base, const std::vector<double>& run, int k) {
  const std::vector<double> lp = log_softmax(base), lq = log_softmax(run);
  std::vector<int> idx(lp.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return base[a] > base[b]; });
  double kl = 0, p_rest = 0, q_rest = 0;
  for (size_t r = 0; r < idx.size(); ++r) {
    const int i = idx[r];
    if (static_cast<int>(r) < k) {
      kl += std::exp(lp[i]) * (lp[i] - lq[i]);
    } else {
      p_rest += std::exp(lp[i]);
      q_rest += std::exp(lq[i]);
    }
  }
  if (p_rest > 0) kl += p_rest * (std::log(p_rest) - std::log(q_rest));
  return kl;
}

class KlDivergence : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new testing::LoadedTinyModel("kl_base");
    testing::TinyModelSpec spec;
    spec.noise = 0.15f;
    other_ = new testing::LoadedTinyModel("kl_other", spec);
    tokens_ = new std::vector<int32_t>(tokenize_for_perplexity(base_->model->tokenizer(), testing::tiny_text()));
  }
  static void TearDownTestSuite() {
    delete base_;
    delete other_;
    delete tokens_;
  }
  static testing::LoadedTinyModel* base_;
  static testing::LoadedTinyModel* other_;
  static std::vector<int32_t>* tokens_;
};
testing::LoadedTinyModel* KlDivergence::base_ = nullptr;
testing::LoadedTinyModel* KlDivergence::other_ = nullptr;
std::vector<int32_t>* KlDivergence::tokens_ = nullptr;

TEST_F(KlDivergence, RunAgainstItselfIsZero) {
  LogitsRecord rec;
  const PerplexityResult plain = run_perplexity(*base_->model, *tokens_, opts(), &rec);
  ASSERT_EQ(rec.n_chunks(), plain.plan.n_chunks);
  ASSERT_EQ(rec.n_rows(), plain.n_scored);
  EXPECT_EQ(rec.top_k(), kLogProbTopK);

  const PerplexityResult r = run_kl_divergence(*base_->model, rec, opts());
  ASSERT_TRUE(r.kl.has_value());
  const KlSummary& s = *r.kl;
  EXPECT_EQ(s.count, plain.n_scored);
  EXPECT_EQ(s.kld.value, 0.0);
  EXPECT_EQ(s.kld_q.max, 0.0);
  EXPECT_EQ(s.kld_q.min, 0.0);
  EXPECT_EQ(s.same_top.value, 1.0);
  EXPECT_DOUBLE_EQ(r.ppl, plain.ppl);
  EXPECT_NEAR(s.ppl_base.value, plain.ppl, 1e-5 * plain.ppl);
  EXPECT_NEAR(s.ln_ppl_ratio.value, 0.0, 1e-6);
  EXPECT_NEAR(s.ppl_ratio.value, 1.0, 1e-6);
  EXPECT_NEAR(s.rms_p_diff.value, 0.0, 1e-6);
}

TEST_F(KlDivergence, PerturbedRunMatchesDirectComputation) {
  LogitsRecord rec;
  const PerplexityResult base_run = run_perplexity(*base_->model, *tokens_, opts(), &rec);
  const PerplexityResult other_run = run_perplexity(*other_->model, *tokens_, opts());
  const PerplexityResult r = run_kl_divergence(*other_->model, rec, opts());
  const KlSummary& s = *r.kl;

  const int n_chunks = rec.n_chunks();
  const auto a = scored_logits(*base_->model, *tokens_, n_chunks);
  const auto b = scored_logits(*other_->model, *tokens_, n_chunks);
  ASSERT_EQ(static_cast<int64_t>(a.size()), s.count);
  double sum = 0, mx = 0;
  int64_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double kl = direct_truncated_kl(a[i], b[i], kLogProbTopK);
    sum += kl;
    mx = std::max(mx, kl);
    same += std::max_element(a[i].begin(), a[i].end()) - a[i].begin() ==
            std::max_element(b[i].begin(), b[i].end()) - b[i].begin();
  }
  const double mean = sum / a.size();
  EXPECT_GT(mean, 1e-3) << "the perturbation should be visible";
  EXPECT_NEAR(s.kld.value, mean, 1e-6 + 1e-4 * mean);
  EXPECT_NEAR(s.kld_q.max, mx, 1e-6 + 1e-4 * mx);
  EXPECT_GE(s.kld_q.min, -1e-9);
  EXPECT_EQ(static_cast<int64_t>(std::llround(s.same_top.value * s.count)), same);
  EXPECT_LT(s.same_top.value, 1.0);
  EXPECT_NEAR(s.ppl.value, other_run.ppl, 1e-6 * other_run.ppl);
  EXPECT_NEAR(s.ppl_base.value, base_run.ppl, 1e-5 * base_run.ppl);
  EXPECT_NEAR(s.ln_ppl_ratio.value, std::log(other_run.ppl / base_run.ppl), 1e-5);
}

// With every token kept, the truncated divergence is the full one.
TEST_F(KlDivergence, FullTopKIsTheFullDivergence) {
  const int n_vocab = base_->model->config().n_vocab;
  LogitsRecord rec(n_vocab, kCtx, n_vocab);
  PerplexityOptions o = opts();
  o.n_chunks = 2;
  run_perplexity(*base_->model, *tokens_, o, &rec);
  ASSERT_EQ(rec.top_k(), n_vocab);
  const PerplexityResult r = run_kl_divergence(*other_->model, rec, o);
  const auto a = scored_logits(*base_->model, *tokens_, 2);
  const auto b = scored_logits(*other_->model, *tokens_, 2);
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lp = log_softmax(a[i]), lq = log_softmax(b[i]);
    for (size_t v = 0; v < lp.size(); ++v) sum += std::exp(lp[v]) * (lp[v] - lq[v]);
  }
  const double mean = sum / a.size();
  EXPECT_NEAR(r.kl->kld.value, mean, 1e-6 + 1e-4 * mean);
}

TEST_F(KlDivergence, RecordRoundTripsAndRejectsBadFiles) {
  LogitsRecord rec;
  PerplexityOptions o = opts();
  o.n_chunks = 2;
  run_perplexity(*base_->model, *tokens_, o, &rec);
  std::stringstream ss;
  rec.write(ss);
  const std::string bytes = ss.str();
  EXPECT_EQ(bytes.size(), 32 + rec.tokens().size() * 4 + rec.n_rows() * (8 + 8 * rec.top_k()));

  std::istringstream in(bytes);
  const LogitsRecord back = LogitsRecord::read(in);
  EXPECT_EQ(back.n_vocab(), rec.n_vocab());
  EXPECT_EQ(back.n_ctx(), rec.n_ctx());
  EXPECT_EQ(back.n_chunks(), rec.n_chunks());
  EXPECT_EQ(back.tokens(), rec.tokens());
  for (int64_t i = 0; i < rec.n_rows(); ++i) {
    const auto x = rec.row(i), y = back.row(i);
    EXPECT_EQ(x.logp_target, y.logp_target);
    EXPECT_EQ(x.logp_rest, y.logp_rest);
    EXPECT_TRUE(std::equal(x.ids.begin(), x.ids.end(), y.ids.begin()));
    EXPECT_TRUE(std::equal(x.logp.begin(), x.logp.end(), y.logp.begin()));
  }
  // Ids are ordered most likely first.
  const auto r0 = rec.row(0);
  for (size_t k = 1; k < r0.logp.size(); ++k) EXPECT_GE(r0.logp[k - 1], r0.logp[k]);

  auto read_bytes = [](const std::string& b) {
    std::istringstream s(b);
    return LogitsRecord::read(s);
  };
  EXPECT_THROW(read_bytes(bytes.substr(0, bytes.size() - 1)), Error);  // truncated
  EXPECT_THROW(read_bytes(bytes + "x"), Error);                        // trailing bytes
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  EXPECT_THROW(read_bytes(bad_magic), Error);
  std::string bad_version = bytes;
  bad_version[8] = 9;
  EXPECT_THROW(read_bytes(bad_version), Error);
  std::string bad_id = bytes;  // first row's first id -> out of range
  const size_t id_at = 32 + rec.tokens().size() * 4 + 8;
  const int32_t huge = 1 << 30;
  std::memcpy(&bad_id[id_at], &huge, 4);
  EXPECT_THROW(read_bytes(bad_id), Error);
  EXPECT_THROW(LogitsRecord::load("/nonexistent/kestrel.kld"), Error);

  // A baseline of another context size cannot be compared with this run.
  PerplexityOptions other_ctx = o;
  other_ctx.n_ctx = 32;
  EXPECT_THROW(run_perplexity(*base_->model, *tokens_, other_ctx, nullptr, &rec), Error);
  // Nor one computed on other tokens.
  std::vector<int32_t> changed = *tokens_;
  changed[5] = changed[5] == 1 ? 2 : 1;
  EXPECT_THROW(run_perplexity(*base_->model, changed, o, nullptr, &rec), Error);
}

TEST(KlStats, QuantilesAndUncertaintiesByHand) {
  KlStats st;
  for (int i = 0; i < 101; ++i) {
    KlToken t;
    t.kld = i;  // 0..100
    t.nll = 2.0;
    t.nll_base = 1.0;
    t.p_diff = 0.0;
    t.same_top = i % 4 == 0;  // 26 of 101
    st.add(t);
  }
  const KlSummary s = st.summary();
  EXPECT_EQ(s.count, 101);
  EXPECT_DOUBLE_EQ(s.kld.value, 50.0);
  // Sample of 0..100: variance (sum x^2/n - mean^2) = 850, error = sqrt(850/100).
  EXPECT_NEAR(s.kld.error, std::sqrt(850.0 / 100.0), 1e-9);
  EXPECT_DOUBLE_EQ(s.kld_q.median, 50.0);
  EXPECT_DOUBLE_EQ(s.kld_q.p99, 99.0);
  EXPECT_NEAR(s.kld_q.p99_9, 99.9, 1e-9);
  EXPECT_DOUBLE_EQ(s.kld_q.max, 100.0);
  EXPECT_DOUBLE_EQ(s.kld_q.min, 0.0);
  EXPECT_NEAR(s.ppl.value, std::exp(2.0), 1e-12);
  EXPECT_NEAR(s.ppl_base.value, std::exp(1.0), 1e-12);
  EXPECT_NEAR(s.ln_ppl_ratio.value, 1.0, 1e-12);
  EXPECT_NEAR(s.same_top.value, 26.0 / 101.0, 1e-12);
  EXPECT_NEAR(s.same_top.error, std::sqrt(26.0 / 101.0 * 75.0 / 101.0 / 100.0), 1e-12);
  const std::string text = format_kl_summary(s);
  EXPECT_NE(text.find("Mean    KLD:  50.000000"), std::string::npos) << text;
  EXPECT_NE(text.find("99.0%   KLD:  99.000000"), std::string::npos) << text;
  EXPECT_NE(text.find("Same top p: 25.743"), std::string::npos) << text;
}

}  // namespace
}  // namespace kestrel
