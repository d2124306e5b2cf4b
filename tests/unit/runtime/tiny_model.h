#pragma once
// A tiny random llama model written as a GGUF file, for tests that run the whole
// engine in milliseconds: 2 layers, n_embd 128, 2 heads (1 KV head, head dim 64:
// the head size of real models, so the SIMD attention kernels run, not only
// their scalar twins), n_ff 256, F32 weights, and a byte-level BPE vocab ("gpt2", pre "default") of
// 256 byte tokens + <|endoftext|> (id 0, also BOS/EOS) + a few merges.
//
// Weights: matrices ~ normal(0, 1/sqrt(fan_in)), token_embd ~ normal(0, 1),
// norms = 1, all drawn from std::mt19937_64(seed). `noise` > 0 adds
// noise * normal(0, same stddev) from a second generator seeded by noise_seed:
// a nearby model with the same vocabulary (for KL-divergence tests).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"
#include "model/quantize.h"
#include "runtime/session.h"

namespace kestrel::testing {

struct TinyModelSpec {
  uint64_t seed = 1;
  float noise = 0.0f;
  uint64_t noise_seed = 2;
  bool add_bos = false;
  int n_layer = 2;
  int n_embd = 128;
  int n_head = 2;
  int n_kv_head = 1;
  int n_ff = 256;
  int n_ctx_train = 512;
  int extra_tokens = 0;  // tokens "<extraN>" after the merges: another vocabulary
  // Norm weights 1 + norm_spread * normal (from a third generator, so the
  // other tensors do not change), the first outlier_channels of each norm
  // times outlier_scale (activation outliers, as trained models have them).
  float norm_spread = 0.0f;
  int outlier_channels = 0;
  float outlier_scale = 1.0f;
  bool tied_output = false;  // no output.weight: the head reads token_embd
};

// GPT-2's byte -> printable code point mapping, as UTF-8 strings.
inline std::vector<std::string> tiny_byte_symbols() {
  std::vector<std::string> out(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + static_cast<uint32_t>(extra++);
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {  // all code points here are < 0x800: two bytes
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    out[b] = s;
  }
  return out;
}

// Writes the model to a fresh file under the temp folder and returns its path.
inline std::string write_tiny_model(const TinyModelSpec& spec, const std::string& tag) {
  gguf::Writer w;
  const std::string a = "llama.";
  const int head_dim = spec.n_embd / spec.n_head;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "tiny-" + tag);
  w.set_u32("general.file_type", 0);
  w.set_u32(a + "block_count", spec.n_layer);
  w.set_u32(a + "context_length", spec.n_ctx_train);
  w.set_u32(a + "embedding_length", spec.n_embd);
  w.set_u32(a + "feed_forward_length", spec.n_ff);
  w.set_u32(a + "attention.head_count", spec.n_head);
  w.set_u32(a + "attention.head_count_kv", spec.n_kv_head);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32(a + "rope.freq_base", 10000.0f);
  w.set_u32(a + "rope.dimension_count", head_dim);

  // Vocab: <|endoftext|>, the 256 bytes, then one token per merge.
  const std::vector<std::string> bytes = tiny_byte_symbols();
  const std::string sp = bytes[' '];  // "Ġ"
  const std::vector<std::pair<std::string, std::string>> merges = {
      {sp, "t"}, {"h", "e"}, {sp + "t", "he"}, {sp, "a"}, {"i", "n"}, {"e", "r"}, {"o", "n"}, {"r", "e"},
      {"a", "n"}, {sp, "s"}, {"e", "n"}, {"a", "t"}, {sp, "o"}, {sp, "w"}, {"o", "r"}, {"e", "s"},
      {sp, "c"}, {"i", "s"}, {sp, "b"}, {sp, "f"}, {"i", "t"}, {"a", "r"}, {"a", "l"}, {sp, "m"},
  };
  std::vector<std::string> tokens = {"<|endoftext|>"};
  std::vector<int32_t> types = {3};
  for (const auto& b : bytes) {
    tokens.push_back(b);
    types.push_back(1);
  }
  std::vector<std::string> merge_lines;
  for (const auto& [l, r] : merges) {
    merge_lines.push_back(l + " " + r);
    tokens.push_back(l + r);
    types.push_back(1);
  }
  for (int i = 0; i < spec.extra_tokens; ++i) {
    tokens.push_back("<extra" + std::to_string(i) + ">");
    types.push_back(1);
  }
  const int n_vocab = static_cast<int>(tokens.size());
  w.set_u32(a + "vocab_size", n_vocab);
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", merge_lines);
  w.set_u32("tokenizer.ggml.bos_token_id", 0);
  w.set_u32("tokenizer.ggml.eos_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", spec.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", false);

  std::mt19937_64 rng(spec.seed), noise_rng(spec.noise_seed);
  // One distribution per generator: a normal_distribution keeps the second
  // value of each pair it draws, so sharing one would mix the two streams (and
  // the noisy model would not be the base model plus noise).
  std::normal_distribution<float> normal(0.0f, 1.0f), noise_normal(0.0f, 1.0f), norm_normal(0.0f, 1.0f);
  std::mt19937_64 norm_rng(spec.seed + 7);
  auto tensor = [&](const std::string& name, std::vector<int64_t> ne, float stddev) {
    int64_t n = 1;
    for (auto d : ne) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) {
      x = stddev > 0.0f ? stddev * normal(rng) : 1.0f;
      if (spec.noise > 0.0f && stddev > 0.0f) x += spec.noise * stddev * noise_normal(noise_rng);
    }
    if (stddev == 0.0f) {  // a norm
      if (spec.norm_spread > 0.0f)
        for (auto& x : v) x += spec.norm_spread * norm_normal(norm_rng);
      for (int c = 0; c < spec.outlier_channels && c < static_cast<int>(v.size()); ++c) v[c] *= spec.outlier_scale;
    }
    std::vector<uint8_t> raw(v.size() * sizeof(float));
    std::memcpy(raw.data(), v.data(), raw.size());
    w.add_tensor(name, DType::F32, std::move(ne), std::move(raw));
  };
  const int64_t E = spec.n_embd, kv = int64_t{spec.n_kv_head} * head_dim, F = spec.n_ff;
  const float se = 1.0f / std::sqrt(static_cast<float>(E)), sf = 1.0f / std::sqrt(static_cast<float>(F));
  tensor("token_embd.weight", {E, n_vocab}, 1.0f);
  tensor("output_norm.weight", {E}, 0.0f);
  if (!spec.tied_output) tensor("output.weight", {E, n_vocab}, se);
  for (int l = 0; l < spec.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    tensor(p + "attn_norm.weight", {E}, 0.0f);
    tensor(p + "attn_q.weight", {E, E}, se);
    tensor(p + "attn_k.weight", {E, kv}, se);
    tensor(p + "attn_v.weight", {E, kv}, se);
    tensor(p + "attn_output.weight", {E, E}, se);
    tensor(p + "ffn_norm.weight", {E}, 0.0f);
    tensor(p + "ffn_gate.weight", {E, F}, se);
    tensor(p + "ffn_up.weight", {E, F}, se);
    tensor(p + "ffn_down.weight", {F, E}, sf);
  }
  const auto path = std::filesystem::temp_directory_path() /
                    ("kestrel_tiny_" + tag + "_" + std::to_string(::getpid()) + ".gguf");
  w.write(path.string());
  return path.string();
}

// A paragraph of plain English for the tiny tokenizer (about 600 tokens).
inline std::string tiny_text() {
  return "The cat sat on the mat and looked at the birds in the garden. It was a warm afternoon, and the "
         "wind was soft. Over the fence, a dog barked at a passing car, then lay down in the shade of an old "
         "tree. The children came home from school, threw their bags on the floor, and ran outside to play. "
         "Their mother called them back for tea, but nobody listened; there were stones to throw, walls to "
         "climb, and a small river at the end of the street where fish sometimes jumped. When the sun went "
         "down, the air turned cold, the birds went quiet, and one by one the windows of the houses began "
         "to glow with yellow light.";
}

// A tiny model written to a temporary file and loaded; the file goes with it.
struct LoadedTinyModel {
  std::string path;
  std::unique_ptr<Model> model;
  explicit LoadedTinyModel(const std::string& tag, const TinyModelSpec& spec = {})
      : path(write_tiny_model(spec, tag)), model(load_model(path)) {}
  ~LoadedTinyModel() { std::filesystem::remove(path); }
};

// A tiny model with 256 columns (whole K-format super-blocks), for the panel formats.
inline TinyModelSpec wide_tiny_spec() {
  TinyModelSpec s;
  s.n_embd = 256;
  s.n_head = 4;
  s.n_ff = 512;
  return s;
}

// `f32_path`'s model quantized to `type` in every matrix (pure), loaded; the
// quantized file is removed once loaded.
inline std::unique_ptr<Model> load_pure_quantized(const std::string& f32_path, DType type) {
  const std::string path = f32_path + "." + std::string(dtype_name(type)) + ".gguf";
  QuantizeOptions qo;
  qo.type = type;
  qo.pure = true;
  quantize_model(f32_path, path, qo);
  auto model = load_model(path);
  std::filesystem::remove(path);
  return model;
}

// Every position's logits of `text` (BOS first) through a fresh session with
// an F32 cache (an F16 one would round more than the transforms the tests
// compare) and `activation_bits` activation codes.
inline std::vector<float> all_logits(const Model& model, const std::string& text, int activation_bits = 8) {
  SessionOptions so;
  so.n_ctx = 512;
  so.engine.n_threads = 2;
  so.engine.k_type = so.engine.v_type = DType::F32;
  so.engine.matmul.activation_bits = activation_bits;
  Session s(model, so);
  return s.append_all_logits(model.tokenizer().encode(text, true, false));
}

// Largest |a - b| over the largest |a|.
inline double relative_gap(const std::vector<float>& a, const std::vector<float>& b) {
  double gap = 0.0, scale = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    gap = std::max(gap, double{std::fabs(a[i] - b[i])});
    scale = std::max(scale, double{std::fabs(a[i])});
  }
  return gap / scale;
}

}  // namespace kestrel::testing
