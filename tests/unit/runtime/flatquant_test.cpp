// `kestrel quantize --flatquant FILE` on tiny models, against the model itself:
//  - random transforms folded into F32 weights and applied at run time give
//    the original logits within float rounding (llama and its qwen2-like
//    variants: tied head, GQA), and the folded matrices are renamed;
//  - identity transforms with ratio-1 clipping give the plain Q4_0 file's
//    logits bit for bit (the fold, the clipping and the online transform add
//    nothing when there is nothing to add);
//  - bad input: transforms for another shape, a missing tensor, a target type
//    the clipping was not trained for, a singular factor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "model/flat_transform.h"
#include "model/quantize.h"
#include "runtime/aware_quantize.h"
#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

using testing::all_logits;
using testing::LoadedTinyModel;
using testing::relative_gap;
using testing::TinyModelSpec;

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

struct TransformsSpec {
  bool identity = false;
  int n_embd_written = 0;   // 0: the model's
  std::string skip_tensor;  // leave this tensor out
  bool singular = false;    // layer 0's attn_in p1 of rank 1
  float act_clip = 0.0f;    // > 0: every site's activation clipping ratio
};

// A transforms file as tools/flatquant/train.py writes it, for model m.
std::string write_transforms(const Model& m, const std::string& tag, const TransformsSpec& spec = {}) {
  const ModelConfig& c = m.config();
  gguf::Writer w;
  w.set_string("general.architecture", "flatquant");
  w.set_string("kestrel.flatquant.model", "tiny.gguf");
  w.set_u32("kestrel.flatquant.n_layer", static_cast<uint32_t>(c.n_layer));
  w.set_u32("kestrel.flatquant.n_embd", static_cast<uint32_t>(spec.n_embd_written ? spec.n_embd_written : c.n_embd));
  w.set_string("kestrel.flatquant.weight_type", "q4_0");
  w.set_u32("kestrel.flatquant.act_bits", 4);
  std::mt19937_64 rng(77);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  std::uniform_real_distribution<float> scale(0.5f, 2.0f);
  const auto add = [&](const std::string& name, std::vector<int64_t> ne, const std::vector<float>& v) {
    if (name != spec.skip_tensor) w.add_tensor(name, DType::F32, std::move(ne), f32_bytes(v));
  };
  const auto factor = [&](int n) {
    std::vector<float> p(static_cast<size_t>(n) * n, 0.0f);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        p[static_cast<size_t>(i) * n + j] =
            (i == j ? 1.0f : 0.0f) + (spec.identity ? 0.0f : noise(rng) / std::sqrt(n * 1.0f));
    return p;
  };
  const int64_t q_dim = int64_t{c.n_head} * c.head_dim;
  const int64_t widths[kFlatSites] = {c.n_embd, q_dim, c.n_embd, c.n_ff};
  const int64_t rows[] = {q_dim, int64_t{c.n_kv_head} * c.head_dim, int64_t{c.n_kv_head} * c.head_dim};
  for (int l = 0; l < c.n_layer; ++l) {
    for (int s = 0; s < kFlatSites; ++s) {
      const int64_t n = widths[s];
      int n1 = static_cast<int>(std::sqrt(static_cast<double>(n)));
      while (n % n1) --n1;
      const int n2 = static_cast<int>(n / n1);
      std::vector<float> sc(static_cast<size_t>(n), 1.0f);
      if (!spec.identity)
        for (float& x : sc) x = scale(rng);
      const std::string p = flat_site_prefix(l, static_cast<FlatSite>(s));
      add(p + "scale", {n}, sc);
      std::vector<float> p1 = factor(n1);
      if (spec.singular && l == 0 && s == 0)
        for (int j = 0; j < n1; ++j) p1[static_cast<size_t>(n1) + j] = 2 * p1[static_cast<size_t>(j)];
      add(p + "p1", {n1, n1}, p1);
      add(p + "p2", {n2, n2}, factor(n2));
      if (spec.act_clip > 0.0f) add(p + "act_clip", {1}, {spec.act_clip});
      const std::vector<std::string>& ms = flat_site_matrices(static_cast<FlatSite>(s));
      for (size_t i = 0; i < ms.size(); ++i) {
        const int64_t r = s == 0 ? rows[i] : s == 1 ? c.n_embd : s == 2 ? c.n_ff : c.n_embd;
        add("blk." + std::to_string(l) + "." + ms[i] + ".flat_clip", {r},
            std::vector<float>(static_cast<size_t>(r), 1.0f));
      }
    }
  }
  const std::string path = m.path() + "." + tag + ".transforms.gguf";
  w.write(path);
  return path;
}

std::unique_ptr<Model> quantize_flat(const Model& m, const std::string& transforms, DType type,
                                     const std::string& tag) {
  QuantizeOptions q;
  q.type = type;
  q.n_threads = 2;
  const std::string path = m.path() + "." + tag + ".gguf";
  quantize_flatquant(m.path(), path, transforms, q);
  std::unique_ptr<Model> out = load_model(path);
  std::filesystem::remove(path);
  return out;
}

// The tiny model's plain Q4_0 file, loaded.
std::unique_ptr<Model> plain_q4_0(const LoadedTinyModel& m) {
  QuantizeOptions q;
  q.type = DType::Q4_0;
  q.n_threads = 2;
  const std::string path = m.path + ".plain_q4.gguf";
  quantize_model(m.path, path, q);
  auto plain = load_model(path);
  std::filesystem::remove(path);
  return plain;
}

TinyModelSpec spec_of(bool tied, int kv_heads) {
  TinyModelSpec s;
  s.norm_spread = 0.3f;
  s.outlier_channels = 3;
  s.outlier_scale = 8.0f;
  s.tied_output = tied;
  s.n_kv_head = kv_heads;
  return s;
}

TEST(FlatQuant, FoldedTransformsComputeTheSameFunction) {
  for (bool tied : {false, true}) {
    LoadedTinyModel m(tied ? "flat_tied" : "flat_untied", spec_of(tied, tied ? 1 : 2));
    const std::string tf = write_transforms(*m.model, "rand");
    auto flat = quantize_flat(*m.model, tf, DType::F32, "flat_f32");
    std::filesystem::remove(tf);
    EXPECT_EQ(flat->file().find_tensor("blk.0.attn_q.weight"), nullptr) << "llama.cpp must refuse the file";
    EXPECT_NE(flat->file().find_tensor("blk.1.ffn_down_flat.weight"), nullptr);
    EXPECT_NE(flat->file().find_tensor("blk.1.flat_ffn_down.p2"), nullptr);
    const std::string text = testing::tiny_text();
    const std::vector<float> a = all_logits(*m.model, text), b = all_logits(*flat, text);
    EXPECT_LT(relative_gap(a, b), 2e-4) << "tied " << tied;
  }
}

TEST(FlatQuant, IdentityTransformsGiveThePlainQ4_0FileBitForBit) {
  LoadedTinyModel m("flat_identity", spec_of(false, 1));
  const std::string tf = write_transforms(*m.model, "identity", {.identity = true});
  auto flat = quantize_flat(*m.model, tf, DType::Q4_0, "flat_q4");
  std::filesystem::remove(tf);
  auto plain = plain_q4_0(m);
  const std::string text = testing::tiny_text();
  EXPECT_EQ(all_logits(*plain, text), all_logits(*flat, text));
  EXPECT_EQ(all_logits(*plain, text, 4), all_logits(*flat, text, 4));
}

// Activation clipping ratios apply with act=a4 only (they were trained for it).
TEST(FlatQuant, ActivationClippingIsForA4Only) {
  LoadedTinyModel m("flat_act_clip", spec_of(false, 1));
  const std::string tf = write_transforms(*m.model, "act_clip", {.identity = true, .act_clip = 0.5f});
  auto flat = quantize_flat(*m.model, tf, DType::Q4_0, "flat_clip_q4");
  std::filesystem::remove(tf);
  EXPECT_NE(flat->file().find_tensor("blk.0.flat_ffn_down.act_clip"), nullptr);
  auto plain = plain_q4_0(m);
  const std::string text = testing::tiny_text();
  EXPECT_EQ(all_logits(*plain, text), all_logits(*flat, text));
  EXPECT_GT(relative_gap(all_logits(*plain, text, 4), all_logits(*flat, text, 4)), 1e-3);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FlatQuant, RefusesTransformsOfAnotherShapeAndBadFiles) {
  LoadedTinyModel m("flat_bad", spec_of(false, 1));
  const auto try_with = [&](const TransformsSpec& spec, DType type) {
    const std::string tf = write_transforms(*m.model, "bad", spec);
    const std::string e = error_of([&] { quantize_flat(*m.model, tf, type, "flat_bad_out"); });
    std::filesystem::remove(tf);
    return e;
  };
  EXPECT_NE(try_with({.n_embd_written = 64}, DType::Q4_0).find("this one has 2 x 128"), std::string::npos);
  EXPECT_NE(try_with({.skip_tensor = "blk.1.flat_attn_out.scale"}, DType::Q4_0).find("blk.1.flat_attn_out.scale"),
            std::string::npos);
  EXPECT_NE(try_with({.skip_tensor = "blk.0.ffn_up.flat_clip"}, DType::Q4_0).find("blk.0.ffn_up.flat_clip"),
            std::string::npos);
  EXPECT_NE(try_with({}, DType::Q4_K).find("trained for Q4_0"), std::string::npos);
  EXPECT_NE(try_with({.singular = true}, DType::Q4_0).find("singular"), std::string::npos);
  // A model file whose transform tensor has another shape: refused at load.
  const std::string tf = write_transforms(*m.model, "ok");
  QuantizeOptions q;
  q.type = DType::F32;
  const std::string path = m.path + ".flat_reload.gguf";
  quantize_flatquant(m.path, path, tf, q);
  std::filesystem::remove(tf);
  const gguf::File f = gguf::File::open(path);
  gguf::Writer w;
  w.copy_metadata(f);
  for (const auto& t : f.tensors()) {
    if (t.name == "blk.0.flat_attn_in.scale") {
      w.add_tensor(t.name, DType::F32, {64}, std::vector<uint8_t>(t.data, t.data + 64 * sizeof(float)));
      continue;
    }
    w.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  const std::string broken = path + ".broken.gguf";
  w.write(broken);
  std::filesystem::remove(path);
  const std::string e = error_of([&] { load_model(broken); });
  std::filesystem::remove(broken);
  EXPECT_NE(e.find("blk.0.flat_attn_in.scale"), std::string::npos) << e;
}

}  // namespace
}  // namespace kestrel
