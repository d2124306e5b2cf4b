// Writes tests/golden/attention/smollm2_qkv.bin (format in
// tests/golden/attention/format.h): SmolLM2-135M decodes a prompt one token at
// a time with an F32 cache on one thread, a kernel set that records every
// query row it is given (in order: per token, per layer, per head), and the
// cache then holds the keys and values. Disabled: run it through
// tests/golden/make_attention_capture.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "golden/attention/format.h"
#include "kernels/attention_set.h"
#include "model/model.h"
#include "platform/thread_pool.h"
#include <fstream>
#include <iostream>
#include <iterator>
#include "unit/engine/model_paths.h"

namespace kestrel {
namespace {

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
        const KvHeadView h = cache.view(layer, 0, kvh);
        const auto* kb = static_cast<const float*>(h.k);
        const auto* vb = static_cast<const float*>(h.v);
        const int64_t off = h.blocks[p / KvCache::kBlock] * (h.block_stride / 4) + (p % KvCache::kBlock) * d;
        l.k.insert(l.k.end(), kb + off, kb + off + d);
        l.v.insert(l.v.end(), vb + off, vb + off + d);
      }
    cap.layers.push_back(std::move(l));
  }
  const std::string out = (testing::golden_dir() / "attention" / "smollm2_qkv.bin").string();
  testing::write_qkv(out, cap);
  std::cout << "wrote " << out << " (" << std::filesystem::file_size(out) << " bytes)\n";
}

}  // namespace
}  // namespace kestrel
