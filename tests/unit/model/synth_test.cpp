// Synthetic models: the tiny size written to a temp file has the metadata and
// tensors a llama model needs, loads, runs a forward pass with O(1) finite
// logits, has weights with the documented statistics, and is a pure function of
// (size, type, seed): the same seed gives the same bytes on any thread count.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "model/model.h"
#include "model/synth.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

class SynthTest : public ::testing::Test {
 protected:
  fs::path tmp(const std::string& name) {
    const fs::path p = fs::temp_directory_path() /
                       ("kestrel_synth_" + std::to_string(::getpid()) + "_" + name + ".gguf");
    paths_.push_back(p);
    return p;
  }
  void TearDown() override {
    for (const auto& p : paths_) fs::remove(p);
  }
  static SynthResult write(const fs::path& p, DType type, uint64_t seed, int threads = 2) {
    SynthOptions o;
    o.size = "tiny";
    o.type = type;
    o.seed = seed;
    o.n_threads = threads;
    return synth_model(p.string(), o);
  }
  static std::vector<char> bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  std::vector<fs::path> paths_;
};

TEST_F(SynthTest, TinyHasLlamaMetadataAndTensors) {
  const fs::path p = tmp("meta");
  const SynthResult r = write(p, DType::Q4_0, 7);
  const gguf::File f = gguf::File::open(p.string());
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("general.name"), r.name);
  EXPECT_NE(r.name.find("tiny"), std::string::npos);
  EXPECT_NE(r.name.find("builtin byte vocab 273"), std::string::npos);
  EXPECT_EQ(f.get_u64("general.file_type"), 2u);  // llama.cpp's MOSTLY_Q4_0
  EXPECT_EQ(f.get_u64("llama.embedding_length"), 256u);
  EXPECT_EQ(f.get_u64("llama.block_count"), 2u);
  EXPECT_EQ(f.get_u64("llama.feed_forward_length"), 768u);
  EXPECT_EQ(f.get_u64("llama.attention.head_count"), 4u);
  EXPECT_EQ(f.get_u64("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(f.get_u64("llama.rope.dimension_count"), 64u);
  EXPECT_EQ(f.get_u64("llama.vocab_size"), 273u);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens")->size(), 273u);
  EXPECT_EQ(r.n_vocab, 273);
  EXPECT_EQ(r.file_bytes, f.file_size());

  // 3 global tensors + 9 per layer, each with its shape and type.
  ASSERT_EQ(f.tensors().size(), 3u + 9u * 2u);
  const auto expect = [&](const std::string& name, DType type, std::vector<int64_t> ne) {
    const gguf::TensorInfo* t = f.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, type) << name;
    EXPECT_EQ(t->ne, ne) << name;
  };
  expect("token_embd.weight", DType::Q4_0, {256, 273});
  expect("output.weight", DType::Q6_K, {256, 273});  // the llama-quantize choice for Q4_0
  expect("output_norm.weight", DType::F32, {256});
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    expect(b + "attn_norm.weight", DType::F32, {256});
    expect(b + "ffn_norm.weight", DType::F32, {256});
    expect(b + "attn_q.weight", DType::Q4_0, {256, 256});
    expect(b + "attn_k.weight", DType::Q4_0, {256, 128});
    expect(b + "attn_v.weight", DType::Q4_0, {256, 128});
    expect(b + "attn_output.weight", DType::Q4_0, {256, 256});
    expect(b + "ffn_gate.weight", DType::Q4_0, {256, 768});
    expect(b + "ffn_up.weight", DType::Q4_0, {256, 768});
    expect(b + "ffn_down.weight", DType::Q4_0, {768, 256});
  }
  int64_t n = 0;
  for (const auto& t : f.tensors()) n += t.n_elements();
  EXPECT_EQ(r.n_params, n);
}

TEST_F(SynthTest, OutputTypeFollowsLlamaQuantize) {
  EXPECT_EQ(synth_output_type(DType::Q4_0, 2048), DType::Q6_K);
  EXPECT_EQ(synth_output_type(DType::Q4_K, 4096), DType::Q6_K);
  EXPECT_EQ(synth_output_type(DType::Q4_1, 576), DType::Q8_0);  // 576 is not a multiple of 256
  EXPECT_EQ(synth_output_type(DType::Q8_0, 2048), DType::Q8_0);
  EXPECT_EQ(synth_output_type(DType::F16, 2048), DType::F16);
  // The 8B shape: 1 + 32 * 9 + 2 tensors, ffn_down rows of 14336.
  const auto plan = synth_tensor_plan(find_synth_shape("8b"), 128256, DType::Q4_K);
  ASSERT_EQ(plan.size(), 1u + 32u * 9u + 2u);
  EXPECT_EQ(plan[9].name, "blk.0.ffn_down.weight");
  EXPECT_EQ(plan[9].ne, (std::vector<int64_t>{14336, 4096}));
  EXPECT_EQ(plan.back().type, DType::Q6_K);
}

TEST_F(SynthTest, WeightsHaveTheDocumentedScale) {
  const fs::path p = tmp("scale");
  write(p, DType::F32, 3);
  const gguf::File f = gguf::File::open(p.string());
  const auto stats = [&](const std::string& name) {
    const gguf::TensorInfo* t = f.find_tensor(name);
    const float* v = reinterpret_cast<const float*>(t->data);
    double s = 0, s2 = 0;
    const int64_t n = t->n_elements();
    for (int64_t i = 0; i < n; ++i) {
      s += v[i];
      s2 += double(v[i]) * v[i];
    }
    const double mean = s / n;
    return std::pair{mean, std::sqrt(s2 / n - mean * mean)};
  };
  // Sample sizes >= 65536: the standard error of the sd is under 0.3%.
  const auto [m_q, sd_q] = stats("blk.0.attn_q.weight");  // fan_in 256
  EXPECT_NEAR(m_q, 0.0, 0.002);
  EXPECT_NEAR(sd_q, 1.0 / 16.0, 0.002);
  const auto [m_d, sd_d] = stats("blk.1.ffn_down.weight");  // fan_in 768
  EXPECT_NEAR(m_d, 0.0, 0.002);
  EXPECT_NEAR(sd_d, 1.0 / std::sqrt(768.0), 0.001);
  const auto [m_e, sd_e] = stats("token_embd.weight");
  EXPECT_NEAR(m_e, 0.0, 0.02);
  EXPECT_NEAR(sd_e, 1.0, 0.02);
  const auto [m_n, sd_n] = stats("blk.1.ffn_norm.weight");
  EXPECT_EQ(m_n, 1.0);
  EXPECT_EQ(sd_n, 0.0);
  // Two tensors of the same shape are not the same draw.
  const auto* q = f.find_tensor("blk.0.attn_q.weight");
  const auto* o = f.find_tensor("blk.0.attn_output.weight");
  EXPECT_NE(std::memcmp(q->data, o->data, q->nbytes), 0);
}

TEST_F(SynthTest, LoadsAndRunsWithFiniteLogits) {
  const fs::path p = tmp("run");
  write(p, DType::Q8_0, 11);
  auto model = load_model(p.string());
  const auto& c = model->config();
  EXPECT_EQ(c.n_embd, 256);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_vocab, 273);
  EXPECT_EQ(c.head_dim, 64);

  const std::vector<int32_t> ids = model->tokenizer().encode("the weather in the north is wet", true, true);
  ASSERT_GE(ids.size(), 8u);
  Batch b;
  for (size_t i = 0; i < ids.size(); ++i) b.add(ids[i], static_cast<int32_t>(i), 0, true);
  KvCache cache(model->kv_shape(64, 1), DType::F16);
  ThreadPool pool(2);
  ForwardScratch scratch;
  ForwardContext ctx{pool, scratch, best_isa(), MatmulOptions{},
                     kernels::attention_kernel_set(DType::F16, kernels::AttentionAlgo::Exact, best_isa())};
  std::vector<float> logits(ids.size() * c.n_vocab);
  model->forward(b, cache, logits.data(), ctx);

  // Unit-RMS final norm times output rows of sd 1/sqrt(n_embd): logits ~ N(0, 1).
  for (size_t t = 0; t < ids.size(); ++t) {
    double s = 0, s2 = 0;
    for (int v = 0; v < c.n_vocab; ++v) {
      const float x = logits[t * c.n_vocab + v];
      ASSERT_TRUE(std::isfinite(x)) << "token " << t << " vocab " << v;
      s += x;
      s2 += double(x) * x;
    }
    const double mean = s / c.n_vocab, sd = std::sqrt(s2 / c.n_vocab - mean * mean);
    EXPECT_GT(sd, 0.5) << "token " << t;
    EXPECT_LT(sd, 2.0) << "token " << t;
  }
}

TEST_F(SynthTest, SameSeedSameBytesOnAnyThreadCount) {
  const fs::path a = tmp("a"), b = tmp("b"), c = tmp("c");
  write(a, DType::Q4_K, 5, 1);
  write(b, DType::Q4_K, 5, 2);
  write(c, DType::Q4_K, 6, 2);
  const auto ba = bytes(a), bb = bytes(b), bc = bytes(c);
  ASSERT_FALSE(ba.empty());
  EXPECT_TRUE(ba == bb);
  ASSERT_EQ(ba.size(), bc.size());
  EXPECT_FALSE(ba == bc);
  // Only the seed key, the name and the weights differ: the first tensor's bytes do.
  const gguf::File fa = gguf::File::open(a.string()), fc = gguf::File::open(c.string());
  const auto* ta = fa.find_tensor("blk.0.ffn_up.weight");
  const auto* tc = fc.find_tensor("blk.0.ffn_up.weight");
  EXPECT_NE(std::memcmp(ta->data, tc->data, ta->nbytes), 0);
}

TEST_F(SynthTest, BadOptionsAreErrors) {
  SynthOptions o;
  o.size = "70b";
  EXPECT_THROW(synth_model(tmp("bad1").string(), o), Error);
  o.size = "tiny";
  o.type = DType::Q8_1;  // an activation format: no file type
  EXPECT_THROW(synth_model(tmp("bad2").string(), o), Error);
  o.type = DType::Q4_0;
  o.vocab_from = "/nonexistent/vocab.gguf";
  EXPECT_THROW(synth_model(tmp("bad3").string(), o), Error);
  EXPECT_FALSE(fs::exists(tmp("bad3")));
}

}  // namespace
}  // namespace kestrel
