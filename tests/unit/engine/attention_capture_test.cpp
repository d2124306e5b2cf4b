// Writes the golden attention captures of tests/golden/attention (format in
// tests/golden/attention/format.h). Disabled: run them all through
// tests/golden/make_attention_capture.sh.
//  - smollm2_qkv.bin (version 1): SmolLM2-135M decodes 128 tokens one at a
//    time with an F32 cache on one thread, a kernel set that records every
//    query row it is given (in order: per token, per layer, per head), and the
//    cache then holds the keys and values.
//  - the long captures (version 2): the model prefills repository text in
//    batches of 512 tokens on every core with an F32 cache, through a kernel
//    set that copies the wanted query rows out of the forward pass's scratch
//    (each row's token and head follow from its address in ForwardScratch::q,
//    its layer and KV head from the cache rows it is given) and then runs the
//    F32 exact kernels. The model is causal, so one run serves every capture of
//    a model: a 2048-position capture is the first 2048 positions of the
//    8192-position run.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "golden/attention/format.h"
#include "kernels/attention_set.h"
#include "model/model.h"
#include "platform/thread_pool.h"
#include "unit/engine/model_paths.h"

namespace kestrel {
namespace {

// Appends the key and value at position p of sequence 0, layer, KV head
// kvh of an F32 cache to a capture layer.
void append_cached_row(const KvCache& cache, int layer, int kvh, int p, int d, testing::QkvLayer& l) {
  const KvHeadView h = cache.view(layer, 0, kvh);
  const auto* kb = static_cast<const float*>(h.k);
  const auto* vb = static_cast<const float*>(h.v);
  const int64_t off = h.blocks[p / KvCache::kBlock] * (h.block_stride / 4) + (p % KvCache::kBlock) * d;
  l.k.insert(l.k.end(), kb + off, kb + off + d);
  l.v.insert(l.v.end(), vb + off, vb + off + d);
}

std::vector<std::vector<float>> g_queries;  // every row call, in call order (one thread)

void capture_row(const kernels::KvRows& kv, int64_t n, int d, const float* q, float scale, float* out) {
  g_queries.emplace_back(q, q + d);
  kernels::attention_kernel_set(DType::F32, kernels::AttentionAlgo::Exact, Isa::Scalar).row(kv, n, d, q, scale, out);
}

TEST(AttentionCapture, DISABLED_WriteSmolLM2Capture) {
  constexpr int kPos = 128;
  const int kLayers[] = {1, 20};
  auto model = load_model(testing::smollm2_path().string());
  const auto& c = model->config();
  std::ifstream in(std::string(KESTREL_SOURCE_DIR) + "/docs/architecture.md");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int32_t> ids = model->tokenizer().encode(text, true, false);
  ASSERT_GE(ids.size(), size_t{kPos});
  ids.resize(kPos);
  KvCache cache(model->kv_shape(kPos, 1), DType::F32);
  ThreadPool pool(1);
  ForwardScratch scratch;
  kernels::AttentionKernelSet set = kernels::attention_kernel_set(DType::F32, kernels::AttentionAlgo::Exact, Isa::Scalar);
  set.row = capture_row;
  ForwardContext ctx{pool, scratch, best_isa(), MatmulOptions{}, set};
  std::vector<float> logits(c.n_vocab);
  g_queries.clear();
  for (int t = 0; t < kPos; ++t) {
    Batch b;
    b.add(ids[t], t, 0, true);
    model->forward(b, cache, logits.data(), ctx);
  }
  ASSERT_EQ(g_queries.size(), size_t(kPos) * c.n_layer * c.n_head);
  const int d = c.head_dim, group = c.n_head / c.n_kv_head;
  testing::QkvCapture cap;
  cap.n_pos = kPos;
  cap.n_heads = c.n_kv_head;
  cap.head_dim = d;
  for (int layer : kLayers) {
    testing::QkvLayer l;
    l.layer = layer;
    for (int p = 0; p < kPos; ++p)
      for (int kvh = 0; kvh < c.n_kv_head; ++kvh) {
        // The first query head of the group.
        const auto& q = g_queries[(size_t(p) * c.n_layer + layer) * c.n_head + kvh * group];
        l.q.insert(l.q.end(), q.begin(), q.end());
        append_cached_row(cache, layer, kvh, p, d, l);
      }
    cap.layers.push_back(std::move(l));
  }
  const std::string out = (testing::golden_dir() / "attention" / "smollm2_qkv.bin").string();
  testing::write_qkv(out, cap);
  std::cout << "wrote " << out << " (" << std::filesystem::file_size(out) << " bytes)\n";
}

// ---- The long captures (version 2) ----

// Repository text, never the evaluation text: docs/architecture.md (what the
// 128-position capture reads), README.md, the other docs, then the sources,
// each in name order, until it is at least `chars` long.
std::string repository_text(size_t chars) {
  namespace fs = std::filesystem;
  const fs::path root(KESTREL_SOURCE_DIR);
  std::vector<fs::path> files = {root / "docs" / "architecture.md", root / "README.md"};
  std::vector<fs::path> docs, srcs;
  for (const auto& e : fs::directory_iterator(root / "docs"))
    if (e.path().extension() == ".md" && e.path().filename() != "architecture.md") docs.push_back(e.path());
  for (const auto& e : fs::recursive_directory_iterator(root / "src"))
    if (e.is_regular_file() && (e.path().extension() == ".h" || e.path().extension() == ".cpp"))
      srcs.push_back(e.path());
  std::sort(docs.begin(), docs.end());
  std::sort(srcs.begin(), srcs.end());
  files.insert(files.end(), docs.begin(), docs.end());
  files.insert(files.end(), srcs.begin(), srcs.end());
  std::string text;
  for (const auto& f : files) {
    if (text.size() >= chars) break;
    std::ifstream in(f);
    text.append((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text += "\n";
  }
  return text;
}

// The query rows a long capture keeps: the last 32 positions before each of
// 512, 2048 and 8192 that fit, and a few spread earlier ones.
std::vector<int> query_positions(int n_pos) {
  std::vector<int> pos;
  for (int p : {0, 1, 15, 100, 255, 1023, 4095, 6143})
    if (p < n_pos) pos.push_back(p);
  for (int end : {512, 2048, 8192})
    if (end <= n_pos)
      for (int p = end - 32; p < end; ++p) pos.push_back(p);
  std::sort(pos.begin(), pos.end());
  pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
  return pos;
}

struct CaptureSpec {
  std::string file;
  int n_pos;
  std::vector<int> layers, kv_heads, q_heads;
};

// What the capturing kernels need to place a row (one forward pass at a time).
struct RowSink {
  const ForwardScratch* scratch = nullptr;
  int n_head = 0, head_dim = 0;
  int32_t batch_pos0 = 0;
  std::map<const void*, std::pair<int, int>> kv_of_k;  // a head's K base -> (layer, kv head)
  // Stored query rows by (layer, query head, position), copied once.
  std::map<std::pair<int, int>, std::vector<float>> rows;  // (layer, head) -> [n_pos][head_dim]
  std::vector<uint8_t> wanted_pos;
  std::vector<uint8_t> wanted_layer, wanted_head;

  void take(const kernels::KvRows& kv, const float* q) {
    const auto it = kv_of_k.find(kv.k);
    if (it == kv_of_k.end()) fail("capture: rows of an unknown head");
    const int layer = it->second.first;
    const int64_t off = q - scratch->q.data(), q_dim = int64_t{n_head} * head_dim;
    const int64_t t = off / q_dim;
    const int h = static_cast<int>((off % q_dim) / head_dim);
    const int64_t pos = batch_pos0 + t;
    if (!wanted_layer[layer] || !wanted_head[h] || !wanted_pos[pos]) return;
    const auto r = rows.find({layer, h});  // made before the run: the workers only look up
    if (r != rows.end()) std::copy(q, q + head_dim, &r->second[size_t(pos) * head_dim]);
  }
};
RowSink g_sink;

const kernels::AttentionKernelSet& f32_exact() {
  return kernels::attention_kernel_set(DType::F32, kernels::AttentionAlgo::Exact, best_isa());
}
void sink_row(const kernels::KvRows& kv, int64_t n, int d, const float* q, float scale, float* out) {
  g_sink.take(kv, q);
  f32_exact().row(kv, n, d, q, scale, out);
}
void sink_tile(const kernels::KvRows& kv, int d, const kernels::TileRows& rows, float scale, float* scratch) {
  for (int r = 0; r < rows.n; ++r) g_sink.take(kv, rows.q[r]);
  f32_exact().tile(kv, d, rows, scale, scratch);
}

void write_long_captures(const std::filesystem::path& model_path, const std::vector<CaptureSpec>& specs) {
  auto model = load_model(model_path.string());
  const auto& c = model->config();
  int n_pos = 0;
  for (const auto& s : specs) n_pos = std::max(n_pos, s.n_pos);
  std::vector<int32_t> ids;
  for (size_t chars = size_t(n_pos) * 4; ids.size() < size_t(n_pos); chars *= 2)
    ids = model->tokenizer().encode(repository_text(chars), true, false);
  ids.resize(n_pos);

  KvCache cache(model->kv_shape(n_pos, 1), DType::F32);
  g_sink = RowSink{};
  g_sink.n_head = c.n_head;
  g_sink.head_dim = c.head_dim;
  g_sink.wanted_pos.assign(n_pos, 0);
  g_sink.wanted_layer.assign(c.n_layer, 0);
  g_sink.wanted_head.assign(c.n_head, 0);
  for (int l = 0; l < c.n_layer; ++l)
    for (int kvh = 0; kvh < c.n_kv_head; ++kvh) g_sink.kv_of_k[cache.view(l, 0, kvh).k] = {l, kvh};
  for (const auto& s : specs) {
    for (int p : query_positions(s.n_pos)) g_sink.wanted_pos[p] = 1;
    for (int l : s.layers) {
      g_sink.wanted_layer[l] = 1;
      for (int h : s.q_heads) {
        g_sink.wanted_head[h] = 1;
        g_sink.rows[{l, h}].assign(size_t(n_pos) * c.head_dim, 0.0f);
      }
    }
  }
  ThreadPool pool(0);
  ForwardScratch scratch;
  g_sink.scratch = &scratch;
  kernels::AttentionKernelSet set = f32_exact();
  set.row = sink_row;
  set.tile = sink_tile;
  ForwardContext ctx{pool, scratch, best_isa(), MatmulOptions{}, set};
  std::vector<float> logits;
  constexpr int kBatch = 512;
  for (int p0 = 0; p0 < n_pos; p0 += kBatch) {
    Batch b;
    const int n = std::min(kBatch, n_pos - p0);
    for (int t = 0; t < n; ++t) b.add(ids[p0 + t], p0 + t, 0, t == n - 1);
    logits.resize(size_t(b.n_logits()) * c.n_vocab);
    g_sink.batch_pos0 = p0;
    model->forward(b, cache, logits.data(), ctx);
  }

  const int d = c.head_dim;
  for (const auto& s : specs) {
    testing::QkvCapture cap;
    cap.n_pos = s.n_pos;
    cap.head_dim = d;
    cap.model_n_head = c.n_head;
    cap.model_n_kv_head = c.n_kv_head;
    cap.q_heads = s.q_heads;
    cap.kv_heads = s.kv_heads;
    cap.n_heads = static_cast<int>(s.kv_heads.size());
    cap.q_pos = query_positions(s.n_pos);
    for (int qi = 0; qi < cap.n_q_heads(); ++qi) ASSERT_LT(cap.kv_of(qi), cap.n_heads) << s.file;
    for (int layer : s.layers) {
      testing::QkvLayer l;
      l.layer = layer;
      for (int p : cap.q_pos)
        for (int h : s.q_heads) {
          const float* q = &g_sink.rows.at({layer, h})[size_t(p) * d];
          l.q.insert(l.q.end(), q, q + d);
        }
      for (int p = 0; p < s.n_pos; ++p)
        for (int kvh : s.kv_heads) {
          append_cached_row(cache, layer, kvh, p, d, l);
        }
      cap.layers.push_back(std::move(l));
    }
    const std::string out = (testing::golden_dir() / "attention" / s.file).string();
    testing::write_qkv(out, cap);
    std::cout << "wrote " << out << " (" << std::filesystem::file_size(out) << " bytes)\n";
  }
}

// SmolLM2-135M (9 query heads, 3 KV heads, head_dim 64, 30 layers): layer 20
// at 8192 positions, KV head 0 and its three query heads (its query rows
// before 512 and 2048 are that layer's 512- and 2048-position attention);
// layer 1 at 2048 positions, KV head 1 and its query heads. Both fit the 4 MB
// the long captures may take (K and V are 256 bytes a position per KV head).
TEST(AttentionCapture, DISABLED_WriteSmolLM2LongCaptures) {
  write_long_captures(testing::smollm2_path(), {{"smollm2_8k_qkv.bin", 8192, {20}, {0}, {0, 1, 2}},
                                                {"smollm2_2k_qkv.bin", 2048, {1}, {1}, {3, 4, 5}}});
}

// Qwen2.5-Coder-0.5B (14 query heads, 2 KV heads, head_dim 64, 24 layers;
// k_proj has a bias, so every key shares an offset): layers 1 and 20 at 2048
// positions, KV head 0 and three of its seven query heads; at 512 positions,
// KV head 1 and three of its query heads (KV head 0 at 512 is the 2048
// capture's rows before 512).
TEST(AttentionCapture, DISABLED_WriteQwen05bLongCaptures) {
  write_long_captures(testing::qwen2_05b_path(), {{"qwen05b_2k_qkv.bin", 2048, {1, 20}, {0}, {0, 3, 6}},
                                                  {"qwen05b_512_qkv.bin", 512, {1, 20}, {1}, {7, 10, 13}}});
}

}  // namespace
}  // namespace kestrel
