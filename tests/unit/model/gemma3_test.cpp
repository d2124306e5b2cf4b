// Gemma 3 on a tiny synthetic model (6 layers: 5 local with a sliding window of
// 8 positions, then 1 global; head_dim 32 != n_embd / n_head; linear RoPE
// scaling that only the global layer takes), against a plain double-precision
// forward written here from the architecture's description, token by token
// with no cache. Prompts and decodes run past the window, through the tiled
// kernel (batches of 64+ tokens) and the per-query kernel (decode), on every
// Isa the host runs. The reference with the window turned off differs from the
// one with it, so the comparison sees the window.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/attention_set.h"
#include "model/config.h"
#include "model/model.h"
#include "ops/gelu.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

struct Tiny {
  int n_layer = 6, n_embd = 48, n_head = 2, n_kv_head = 1, head_dim = 32, n_ff = 96, window = 8;
  float rope_base = 1000.0f, rope_base_swa = 100.0f, rope_factor = 2.0f, eps = 1e-6f;
};

using Tensors = std::map<std::string, std::vector<float>>;

// Vocab: <pad> <eos> <bos> <unk> then the 256 byte tokens (SentencePiece "llama").
constexpr int kVocab = 4 + 256;

std::string write_tiny_gemma3(const Tiny& m, Tensors& t, const std::string& tag, bool pattern_key = false) {
  gguf::Writer w;
  const std::string a = "gemma3.";
  w.set_string("general.architecture", "gemma3");
  w.set_string("general.name", "tiny-gemma3");
  w.set_u32(a + "block_count", m.n_layer);
  w.set_u32(a + "context_length", 4096);
  w.set_u32(a + "embedding_length", m.n_embd);
  w.set_u32(a + "feed_forward_length", m.n_ff);
  w.set_u32(a + "attention.head_count", m.n_head);
  w.set_u32(a + "attention.head_count_kv", m.n_kv_head);
  w.set_u32(a + "attention.key_length", m.head_dim);
  w.set_u32(a + "attention.value_length", m.head_dim);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", m.eps);
  w.set_f32(a + "rope.freq_base", m.rope_base);
  w.set_f32(a + "rope.freq_base_swa", m.rope_base_swa);
  w.set_string(a + "rope.scaling.type", "linear");
  w.set_f32(a + "rope.scaling.factor", m.rope_factor);
  w.set_u32(a + "attention.sliding_window", m.window);
  if (pattern_key) w.set_u32(a + "attention.sliding_window_pattern", 3);

  std::vector<std::string> tokens = {"<pad>", "<eos>", "<bos>", "<unk>"};
  std::vector<int32_t> types = {3, 3, 3, 2};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    tokens.push_back(name);
    types.push_back(6);
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", std::vector<float>(tokens.size(), 0.0f));
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 2);
  w.set_u32("tokenizer.ggml.eos_token_id", 1);
  w.set_u32("tokenizer.ggml.unknown_token_id", 3);

  std::mt19937_64 rng(20260512);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto tensor = [&](const std::string& name, std::vector<int64_t> ne, float stddev, float mean = 0.0f) {
    int64_t n = 1;
    for (auto d : ne) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = mean + stddev * normal(rng);
    std::vector<uint8_t> raw(v.size() * sizeof(float));
    std::memcpy(raw.data(), v.data(), raw.size());
    w.add_tensor(name, DType::F32, std::move(ne), std::move(raw));
    t[name] = std::move(v);
  };
  const int64_t E = m.n_embd, hd = m.head_dim, qd = int64_t{m.n_head} * hd, kvd = int64_t{m.n_kv_head} * hd;
  const int64_t F = m.n_ff;
  const float se = 1.0f / std::sqrt(float(E)), sq = 1.0f / std::sqrt(float(qd)), sf = 1.0f / std::sqrt(float(F));
  // Embeddings of RMS ~1/sqrt(E) (as trained Gemma's, which the sqrt(E) scale undoes).
  tensor("token_embd.weight", {E, kVocab}, se);
  tensor("output_norm.weight", {E}, 0.3f, 1.0f);
  for (int l = 0; l < m.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    tensor(p + "attn_norm.weight", {E}, 0.3f, 1.0f);
    tensor(p + "attn_q.weight", {E, qd}, se);
    tensor(p + "attn_k.weight", {E, kvd}, se);
    tensor(p + "attn_v.weight", {E, kvd}, se);
    tensor(p + "attn_output.weight", {qd, E}, sq);
    // Large q/k norm weights: sharp attention, so that which keys a query sees matters.
    tensor(p + "attn_q_norm.weight", {hd}, 0.5f, 2.0f);
    tensor(p + "attn_k_norm.weight", {hd}, 0.5f, 2.0f);
    tensor(p + "post_attention_norm.weight", {E}, 0.3f, 1.0f);
    tensor(p + "ffn_norm.weight", {E}, 0.3f, 1.0f);
    tensor(p + "ffn_gate.weight", {E, F}, se);
    tensor(p + "ffn_up.weight", {E, F}, se);
    tensor(p + "ffn_down.weight", {F, E}, sf);
    tensor(p + "post_ffw_norm.weight", {E}, 0.3f, 1.0f);
  }
  const auto path = fs::temp_directory_path() / ("kestrel_gemma3_" + tag + "_" + std::to_string(::getpid()) + ".gguf");
  w.write(path.string());
  return path.string();
}

// ---- the reference: double precision, whole sequence, no cache -------------------

using Vec = std::vector<double>;

Vec rmsnorm(const double* x, const std::vector<float>& w, int64_t n, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double s = 1.0 / std::sqrt(ss / double(n) + eps);
  Vec out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * s * w[i];
  return out;
}

// y[rows] = W[rows, cols] x  (GGUF ne = {cols, rows})
Vec matvec(const std::vector<float>& W, const Vec& x, int64_t rows) {
  const int64_t cols = static_cast<int64_t>(x.size());
  Vec y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r] += double(W[r * cols + c]) * x[c];
  return y;
}

// NeoX RoPE: pairs (i, i + d/2), angle pos * scale * base^(-2i/d).
void rope(double* h, int d, int64_t pos, double base, double scale) {
  for (int i = 0; i < d / 2; ++i) {
    const double th = double(pos) * scale * std::pow(base, -2.0 * i / d);
    const double a = h[i], b = h[i + d / 2];
    h[i] = a * std::cos(th) - b * std::sin(th);
    h[i + d / 2] = a * std::sin(th) + b * std::cos(th);
  }
}

// Logits [n_tokens][kVocab] for tokens at positions 0.. (one sequence).
std::vector<Vec> reference(const Tiny& m, const Tensors& t, const std::vector<int32_t>& toks, bool use_window) {
  const int64_t E = m.n_embd, hd = m.head_dim, F = m.n_ff, T = static_cast<int64_t>(toks.size());
  const int group = m.n_head / m.n_kv_head;
  std::vector<Vec> x(static_cast<size_t>(T));
  for (int64_t p = 0; p < T; ++p) {
    x[p].resize(E);
    for (int64_t i = 0; i < E; ++i) x[p][i] = t.at("token_embd.weight")[toks[p] * E + i] * std::sqrt(double(E));
  }
  for (int l = 0; l < m.n_layer; ++l) {
    const std::string pre = "blk." + std::to_string(l) + ".";
    auto W = [&](const char* n) -> const std::vector<float>& { return t.at(pre + n); };
    const bool local = l % 6 < 5;
    std::vector<Vec> q(T), k(T), v(T);
    for (int64_t p = 0; p < T; ++p) {
      const Vec n = rmsnorm(x[p].data(), W("attn_norm.weight"), E, m.eps);
      q[p] = matvec(W("attn_q.weight"), n, m.n_head * hd);
      k[p] = matvec(W("attn_k.weight"), n, m.n_kv_head * hd);
      v[p] = matvec(W("attn_v.weight"), n, m.n_kv_head * hd);
      for (int h = 0; h < m.n_head; ++h) {
        Vec qn = rmsnorm(&q[p][h * hd], W("attn_q_norm.weight"), hd, m.eps);
        rope(qn.data(), int(hd), p, local ? m.rope_base_swa : m.rope_base, local ? 1.0 : 1.0 / m.rope_factor);
        for (int64_t i = 0; i < hd; ++i) q[p][h * hd + i] = qn[i] / std::sqrt(double(hd));
      }
      for (int h = 0; h < m.n_kv_head; ++h) {
        Vec kn = rmsnorm(&k[p][h * hd], W("attn_k_norm.weight"), hd, m.eps);
        rope(kn.data(), int(hd), p, local ? m.rope_base_swa : m.rope_base, local ? 1.0 : 1.0 / m.rope_factor);
        std::copy(kn.begin(), kn.end(), k[p].begin() + h * hd);
      }
    }
    for (int64_t p = 0; p < T; ++p) {
      const int64_t first = local && use_window ? std::max<int64_t>(0, p - m.window + 1) : 0;
      Vec att(static_cast<size_t>(m.n_head * hd), 0.0);
      for (int h = 0; h < m.n_head; ++h) {
        const int kvh = h / group;
        std::vector<double> s;
        double mx = -1e300;
        for (int64_t j = first; j <= p; ++j) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += q[p][h * hd + i] * k[j][kvh * hd + i];
          s.push_back(d);
          mx = std::max(mx, d);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = first; j <= p; ++j)
          for (int64_t i = 0; i < hd; ++i) att[h * hd + i] += s[j - first] / sum * v[j][kvh * hd + i];
      }
      const Vec o = matvec(W("attn_output.weight"), att, E);
      const Vec on = rmsnorm(o.data(), W("post_attention_norm.weight"), E, m.eps);
      Vec& xp = x[p];
      for (int64_t i = 0; i < E; ++i) xp[i] += on[i];
      const Vec n = rmsnorm(xp.data(), W("ffn_norm.weight"), E, m.eps);
      const Vec g = matvec(W("ffn_gate.weight"), n, F), u = matvec(W("ffn_up.weight"), n, F);
      Vec a(static_cast<size_t>(F));
      // GELU as the engine's op computes it (F16 table, tested on its own in
      // tests/unit/ops/gelu_test.cpp against the formula).
      for (int64_t i = 0; i < F; ++i) a[i] = double(gelu_tanh_f16_table(float(g[i]))) * u[i];
      const Vec d = matvec(W("ffn_down.weight"), a, E);
      const Vec dn = rmsnorm(d.data(), W("post_ffw_norm.weight"), E, m.eps);
      for (int64_t i = 0; i < E; ++i) xp[i] += dn[i];
    }
  }
  std::vector<Vec> out;
  for (int64_t p = 0; p < T; ++p) {
    const Vec n = rmsnorm(x[p].data(), t.at("output_norm.weight"), E, m.eps);
    out.push_back(matvec(t.at("token_embd.weight"), n, kVocab));  // tied
  }
  return out;
}

double max_diff(const float* a, const Vec& b) {
  double d = 0;
  for (size_t i = 0; i < b.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

class Gemma3Test : public ::testing::Test {
 protected:
  void SetUp() override { path_ = write_tiny_gemma3(m_, t_, "fwd"); }
  void TearDown() override { fs::remove(path_); }
  Tiny m_;
  Tensors t_;
  std::string path_;
};

TEST_F(Gemma3Test, ConfigFromMetadata) {
  auto model = load_model(path_);
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.arch, "gemma3");
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.n_vocab, kVocab);
  EXPECT_EQ(c.sliding_window, 8);
  ASSERT_EQ(c.swa_layers.size(), 6u);
  for (int l = 0; l < 6; ++l) EXPECT_EQ(c.is_swa(l), l != 5) << "layer " << l;
  EXPECT_EQ(c.rope.layout, RopeLayout::Neox);
  EXPECT_FLOAT_EQ(c.rope.freq_base, 1000.0f);
  EXPECT_FLOAT_EQ(c.rope.freq_scale, 0.5f);
  EXPECT_FLOAT_EQ(c.rope_swa.freq_base, 100.0f);
  EXPECT_FLOAT_EQ(c.rope_swa.freq_scale, 1.0f);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / std::sqrt(32.0f));
  EXPECT_EQ(c.final_logit_softcap, 0.0f);
  EXPECT_EQ(model->tokenizer().spec().chat_template, "gemma");  // none in the file
}

TEST(Gemma3Config, PatternKey) {
  Tiny m;
  Tensors t;
  const std::string p = write_tiny_gemma3(m, t, "pattern", /*pattern_key=*/true);
  auto model = load_model(p);
  fs::remove(p);
  const auto& c = model->config();
  for (int l = 0; l < 6; ++l) EXPECT_EQ(c.is_swa(l), l % 3 != 2) << "layer " << l;
}

// Runs the engine over `toks`: a prompt of n_prompt tokens in one batch, then
// one token per call; returns the logits of every position.
std::vector<std::vector<float>> run_engine(const Model& model, const std::vector<int32_t>& toks, int64_t n_prompt,
                                           Isa isa, DType kv) {
  KvCache cache(model.kv_shape(256, 1), kv, isa);
  ThreadPool pool(2);
  ForwardScratch scratch;
  const auto& attn = kernels::attention_kernel_set(kv, kernels::AttentionAlgo::Exact, isa);
  ForwardContext ctx{pool, scratch, isa, MatmulOptions{}, attn};
  model.prepare(ctx);
  const int n_vocab = model.config().n_vocab;
  std::vector<std::vector<float>> out;
  Batch b;
  for (int64_t p = 0; p < n_prompt; ++p) b.add(toks[p], int32_t(p), 0, true);
  std::vector<float> logits(static_cast<size_t>(n_prompt) * n_vocab);
  model.forward(b, cache, logits.data(), ctx);
  for (int64_t p = 0; p < n_prompt; ++p)
    out.emplace_back(logits.begin() + p * n_vocab, logits.begin() + (p + 1) * n_vocab);
  for (int64_t p = n_prompt; p < static_cast<int64_t>(toks.size()); ++p) {
    b.clear();
    b.add(toks[p], int32_t(p), 0, true);
    std::vector<float> one(static_cast<size_t>(n_vocab));
    model.forward(b, cache, one.data(), ctx);
    out.push_back(std::move(one));
  }
  return out;
}

TEST_F(Gemma3Test, MatchesReferencePastTheWindow) {
  auto model = load_model(path_);
  std::mt19937 rng(7);
  std::vector<int32_t> toks(80);
  for (auto& x : toks) x = 4 + int32_t(rng() % 256);
  const auto ref = reference(m_, t_, toks, true);
  const auto ref_nowin = reference(m_, t_, toks, false);

  // The window changes the logits past it: the comparison below can see it.
  double window_effect = 0;
  for (size_t p = size_t(m_.window); p < toks.size(); ++p) {
    std::vector<float> f(ref[p].begin(), ref[p].end());
    window_effect = std::max(window_effect, max_diff(f.data(), ref_nowin[p]));
  }
  EXPECT_GT(window_effect, 0.5);
  const double tol = 2e-3 * [&] {
    double mx = 0;
    for (const auto& r : ref)
      for (double v : r) mx = std::max(mx, std::fabs(v));
    return mx;
  }();

  for (Isa isa : supported_isas()) {
    // 72-token prompt (tiled kernel) then 8 decodes; 5-token prompt (per-query
    // kernel) then 75 decodes.
    for (int64_t n_prompt : {int64_t{72}, int64_t{5}}) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " prompt " + std::to_string(n_prompt));
      const auto got = run_engine(*model, toks, n_prompt, isa, DType::F32);
      for (size_t p = 0; p < toks.size(); ++p) ASSERT_LT(max_diff(got[p].data(), ref[p]), tol) << "position " << p;
    }
  }
}

// The default F16 cache (what every command uses): same answer within F16 rounding.
TEST_F(Gemma3Test, F16CacheMatchesReference) {
  auto model = load_model(path_);
  std::vector<int32_t> toks(70);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = 4 + int32_t((i * 37 + 11) % 256);
  const auto ref = reference(m_, t_, toks, true);
  const auto got = run_engine(*model, toks, 66, best_isa(), DType::F16);
  for (size_t p = 0; p < toks.size(); ++p) EXPECT_LT(max_diff(got[p].data(), ref[p]), 0.05) << "position " << p;
}

}  // namespace
}  // namespace kestrel
