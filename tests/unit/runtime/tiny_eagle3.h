#pragma once
// A tiny random EAGLE-3 head (llama.cpp's "eagle3" GGUF layout) for the tiny
// target of tiny_model.h, and a plain double-precision reference of what the
// head computes, written from the equations in model/eagle3_head.h (dense
// loops, full attention recomputed each call): the tests' independent oracle.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel::testing {

struct TinyEagle3Spec {
  uint64_t seed = 7;
  std::vector<int> target_layers = {0, 1, 2};  // for the 2-layer tiny target: input of 0, 1 and after the last
  int n_embd = 128;                            // the target's (the head shares its embeddings)
  int n_head = 2, n_kv_head = 1, n_ff = 96;
  int n_draft_vocab = 120;  // d2t: draft id i -> target id 2 * i + 1
  int target_hidden = 128;
};

struct TinyEagle3Weights {
  TinyEagle3Spec spec;
  int head_dim = 64;
  std::vector<float> fc, attn_norm, hidden_norm, wq, wk, wv, wo, ffn_norm, gate, up, down, output_norm, output;
  std::vector<int64_t> d2t;
};

inline TinyEagle3Weights make_tiny_eagle3(const TinyEagle3Spec& spec) {
  TinyEagle3Weights w;
  w.spec = spec;
  w.head_dim = spec.n_embd / spec.n_head;
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](std::vector<float>& v, int64_t rows, int64_t cols) {
    v.resize(static_cast<size_t>(rows * cols));
    const float s = 1.0f / std::sqrt(static_cast<float>(cols));
    for (auto& x : v) x = s * normal(rng);
  };
  auto norm = [&](std::vector<float>& v, int64_t n) {
    v.resize(static_cast<size_t>(n));
    for (auto& x : v) x = 1.0f + 0.1f * normal(rng);
  };
  const int64_t E = spec.n_embd, q = int64_t{spec.n_head} * w.head_dim, kv = int64_t{spec.n_kv_head} * w.head_dim;
  fill(w.fc, E, 3 * spec.target_hidden);
  norm(w.attn_norm, E);
  norm(w.hidden_norm, E);
  fill(w.wq, q, 2 * E);
  fill(w.wk, kv, 2 * E);
  fill(w.wv, kv, 2 * E);
  fill(w.wo, E, q);
  norm(w.ffn_norm, E);
  fill(w.gate, spec.n_ff, E);
  fill(w.up, spec.n_ff, E);
  fill(w.down, E, spec.n_ff);
  norm(w.output_norm, E);
  fill(w.output, spec.n_draft_vocab, E);
  for (auto& x : w.output) x *= 4.0f;  // peaked logits: drafts with some confidence
  for (int i = 0; i < spec.n_draft_vocab; ++i) w.d2t.push_back(2 * i + 1);
  return w;
}

// Writes the head with the target's vocabulary (copied metadata) to a temp file.
inline std::string write_tiny_eagle3(const TinyEagle3Weights& w, const std::string& target_path,
                                     const std::string& tag) {
  const gguf::File target = gguf::File::open(target_path);
  gguf::Writer out;
  out.copy_metadata(target);
  std::vector<std::string> drop;
  for (const auto& [key, value] : out.metadata())
    if (key.rfind("llama.", 0) == 0) drop.push_back(key);
  for (const auto& key : drop) out.remove(key);
  const auto& s = w.spec;
  const std::string a = "eagle3.";
  out.set_string("general.architecture", "eagle3");
  out.set_u32(a + "block_count", 1);
  out.set_u32(a + "context_length", 512);
  out.set_u32(a + "embedding_length", s.n_embd);
  out.set_u32(a + "feed_forward_length", s.n_ff);
  out.set_u32(a + "attention.head_count", s.n_head);
  out.set_u32(a + "attention.head_count_kv", s.n_kv_head);
  out.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-6f);
  out.set_f32(a + "rope.freq_base", 10000.0f);
  out.set_u32(a + "rope.dimension_count", w.head_dim);
  out.set_i32_array(a + "target_layers", std::vector<int32_t>(s.target_layers.begin(), s.target_layers.end()));
  out.set_u32(a + "target_hidden_size", s.target_hidden);
  auto f32 = [&](const std::string& name, const std::vector<float>& v, std::vector<int64_t> ne) {
    std::vector<uint8_t> raw(v.size() * sizeof(float));
    std::memcpy(raw.data(), v.data(), raw.size());
    out.add_tensor(name, DType::F32, std::move(ne), std::move(raw));
  };
  const int64_t E = s.n_embd, q = int64_t{s.n_head} * w.head_dim, kv = int64_t{s.n_kv_head} * w.head_dim;
  f32("fc.weight", w.fc, {3 * s.target_hidden, E});
  f32("blk.0.attn_norm.weight", w.attn_norm, {E});
  f32("blk.0.attn_norm_2.weight", w.hidden_norm, {E});
  f32("blk.0.attn_q.weight", w.wq, {2 * E, q});
  f32("blk.0.attn_k.weight", w.wk, {2 * E, kv});
  f32("blk.0.attn_v.weight", w.wv, {2 * E, kv});
  f32("blk.0.attn_output.weight", w.wo, {q, E});
  f32("blk.0.ffn_norm.weight", w.ffn_norm, {E});
  f32("blk.0.ffn_gate.weight", w.gate, {E, s.n_ff});
  f32("blk.0.ffn_up.weight", w.up, {E, s.n_ff});
  f32("blk.0.ffn_down.weight", w.down, {s.n_ff, E});
  f32("output_norm.weight", w.output_norm, {E});
  f32("output.weight", w.output, {E, s.n_draft_vocab});
  std::vector<uint8_t> raw(w.d2t.size() * sizeof(int64_t));
  std::memcpy(raw.data(), w.d2t.data(), raw.size());
  out.add_tensor("d2t", DType::I64, {static_cast<int64_t>(w.d2t.size())}, std::move(raw));
  const auto path =
      std::filesystem::temp_directory_path() / ("kestrel_eagle3_" + tag + "_" + std::to_string(::getpid()) + ".gguf");
  out.write(path.string());
  return path.string();
}

// The reference: feeds head positions one at a time (input token, g) and
// keeps every position's keys and values; the caller drops positions with truncate().
class ReferenceEagle3 {
 public:
  ReferenceEagle3(const TinyEagle3Weights& w, std::vector<float> token_embd) : w_(w), embd_(std::move(token_embd)) {}

  std::vector<double> encode(const std::vector<float>& features) const {
    return matvec(w_.fc, std::vector<double>(features.begin(), features.end()), w_.spec.n_embd);
  }
  // Returns the pre-norm output; logits (over the draft vocabulary) in `logits`.
  std::vector<double> step(int32_t token, const std::vector<double>& g, int64_t pos, std::vector<double>& logits) {
    const int64_t E = w_.spec.n_embd, hd = w_.head_dim;
    std::vector<double> e(embd_.begin() + token * E, embd_.begin() + (token + 1) * E);
    std::vector<double> c = rms(e, w_.attn_norm);
    const std::vector<double> gn = rms(g, w_.hidden_norm);
    c.insert(c.end(), gn.begin(), gn.end());
    std::vector<double> q = matvec(w_.wq, c, w_.spec.n_head * hd), k = matvec(w_.wk, c, w_.spec.n_kv_head * hd),
                        v = matvec(w_.wv, c, w_.spec.n_kv_head * hd);
    rope(q, pos);
    rope(k, pos);
    keys_.push_back(k);
    values_.push_back(v);
    std::vector<double> att(q.size(), 0.0);
    const int group = w_.spec.n_head / w_.spec.n_kv_head;
    for (int h = 0; h < w_.spec.n_head; ++h) {
      const int kvh = h / group;
      std::vector<double> s(keys_.size());
      double mx = -1e300;
      for (size_t j = 0; j < keys_.size(); ++j) {
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += q[h * hd + i] * keys_[j][kvh * hd + i];
        s[j] = d / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (size_t j = 0; j < keys_.size(); ++j)
        for (int64_t i = 0; i < hd; ++i) att[h * hd + i] += s[j] / sum * values_[j][kvh * hd + i];
    }
    std::vector<double> h = matvec(w_.wo, att, E);
    for (int64_t i = 0; i < E; ++i) h[i] += g[i];
    const std::vector<double> n = rms(h, w_.ffn_norm);
    const std::vector<double> ga = matvec(w_.gate, n, w_.spec.n_ff), up = matvec(w_.up, n, w_.spec.n_ff);
    std::vector<double> act(ga.size());
    for (size_t i = 0; i < ga.size(); ++i) act[i] = ga[i] / (1.0 + std::exp(-ga[i])) * up[i];
    const std::vector<double> down = matvec(w_.down, act, E);
    for (int64_t i = 0; i < E; ++i) h[i] += down[i];
    logits = matvec(w_.output, rms(h, w_.output_norm), w_.spec.n_draft_vocab);
    return h;
  }
  void truncate(size_t n) {
    keys_.resize(n);
    values_.resize(n);
  }
  size_t size() const { return keys_.size(); }

 private:
  static std::vector<double> matvec(const std::vector<float>& m, const std::vector<double>& x, int64_t rows) {
    const int64_t cols = static_cast<int64_t>(x.size());
    std::vector<double> y(static_cast<size_t>(rows), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < cols; ++i) y[r] += m[r * cols + i] * x[i];
    return y;
  }
  static std::vector<double> rms(const std::vector<double>& x, const std::vector<float>& w) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double s = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + 1e-6);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
    return y;
  }
  // GGML's normal mode: adjacent pairs (2i, 2i+1) of each head rotate by pos * base^(-2i/hd).
  void rope(std::vector<double>& x, int64_t pos) const {
    const int64_t hd = w_.head_dim;
    for (size_t h = 0; h < x.size() / hd; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double th = static_cast<double>(pos) * std::pow(10000.0, -2.0 * i / static_cast<double>(hd));
        double& a = x[h * hd + 2 * i];
        double& b = x[h * hd + 2 * i + 1];
        const double a0 = a, b0 = b;
        a = a0 * std::cos(th) - b0 * std::sin(th);
        b = a0 * std::sin(th) + b0 * std::cos(th);
      }
  }
  const TinyEagle3Weights& w_;
  std::vector<float> embd_;
  std::vector<std::vector<double>> keys_, values_;
};

}  // namespace kestrel::testing
