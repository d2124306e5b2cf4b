// CQ calibration (runtime/cq_calibration.h) on the tiny random model: the rows
// read back from the cache, the per-layer learning and the sidecar made for
// the model, the built-in generation.
#include "runtime/cq_calibration.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "gguf/gguf.h"
#include "unit/error_text.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

using kestrel::testing::error_of;

SessionOptions small_session(int threads) {
  SessionOptions so;
  so.n_ctx = 256;
  so.n_batch = 64;
  so.engine.n_threads = threads;
  return so;
}

// A kv=`type` session (a 16-row window) reading the sidecar next to the tiny
// model, against the F16 cache over the same 150 tokens: its logits differ
// (the codes were read) and stay within half the largest logit (a coarse
// bound: the tiny model's rows are random, far from any codebook). Returns
// the residual stages of its keys' books.
int expect_cq_session_close(const Model& model, DType type) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 150; ++i) prompt.push_back(3 + (i * 11) % 50);
  SessionOptions so = small_session(2);
  Session f16(model, so);
  const std::vector<float> exact = f16.append_all_logits(prompt);
  so.engine.k_type = so.engine.v_type = type;
  so.engine.cq_window = 16;
  Session cq(model, so);
  const std::vector<float> coded = cq.append_all_logits(prompt);
  EXPECT_EQ(coded.size(), exact.size());
  double worst = 0.0, scale = 0.0;
  for (size_t i = 0; i < std::min(exact.size(), coded.size()); ++i) {
    worst = std::max(worst, std::fabs(double{coded[i]} - exact[i]));
    scale = std::max(scale, std::fabs(double{exact[i]}));
  }
  EXPECT_GT(worst, 0.0);
  EXPECT_LT(worst, 0.5 * scale);
  return cq.cache().view(0, 0, 0).cq.k_stages;
}

// Max over rows of |a_p - b_p| / |b_p|, rows of 64.
double max_row_difference(const std::vector<float>& a, const std::vector<float>& b, size_t rows) {
  double worst = 0.0;
  for (size_t r = 0; r < rows; ++r) {
    double diff = 0.0, norm = 0.0;
    for (size_t c = r * 64; c < (r + 1) * 64; ++c) {
      diff += (double(a[c]) - b[c]) * (double(a[c]) - b[c]);
      norm += double(b[c]) * b[c];
    }
    worst = std::max(worst, std::sqrt(diff / norm));
  }
  return worst;
}

// Rows are read through the block table: the model is causal, so the first
// 40 positions (two full blocks and a partial one) read the same after 40 and
// after 150 tokens of the same text, up to the rounding of other batch shapes
// (one batch of 40, then batches of 64); a row of another position would
// differ by its RoPE angle alone.
TEST(CqCalibration, ReadsCachedRowsInPositionOrder) {
  testing::LoadedTinyModel tiny("cq_rows");
  Session session(*tiny.model, small_session(1));
  ASSERT_EQ(evaluate_calibration_text(session, testing::tiny_text(), 40), 40);
  const std::vector<float> k40 = cached_kv_rows(session.cache(), 1, 0, true, 40);
  const std::vector<float> v40 = cached_kv_rows(session.cache(), 1, 0, false, 40);
  ASSERT_EQ(evaluate_calibration_text(session, testing::tiny_text(), 150), 150);
  const std::vector<float> k150 = cached_kv_rows(session.cache(), 1, 0, true, 150);
  const std::vector<float> v150 = cached_kv_rows(session.cache(), 1, 0, false, 150);
  ASSERT_EQ(k150.size(), size_t{150} * 64);
  EXPECT_LT(max_row_difference(k40, k150, 40), 1e-2);
  EXPECT_LT(max_row_difference(v40, v150, 40), 1e-2);
  const std::vector<float> shifted(k150.begin() + 64, k150.end());
  EXPECT_GT(max_row_difference(shifted, k150, 40), 0.1);
  EXPECT_THROW(cached_kv_rows(session.cache(), 0, 0, true, 151), Error);
}

// One layer's codebooks do not depend on the thread count; the sidecar made
// for the model loads back against it, and not against another model.
TEST(CqCalibration, LearnsLayersAndWritesTheSidecar) {
  testing::LoadedTinyModel tiny("cq_learn");
  const CqModelInfo info = cq_model_info(tiny.model->file());
  EXPECT_EQ(info.n_kv_head, 1);
  EXPECT_EQ(info.k_head_dim, 64);
  CqCodebooks one = make_cq_codebooks(kCq1, info), two = make_cq_codebooks(kCq1, info);
  Session session(*tiny.model, small_session(2));
  const int64_t n = evaluate_calibration_text(session, testing::tiny_text(), 200);
  ThreadPool pool1(1);
  for (int layer = 0; layer < info.n_layer; ++layer) {
    const CqLayerReport a = learn_cq_layer(session.cache(), n, layer, 7, 10, pool1, one);
    const CqLayerReport b = learn_cq_layer(session.cache(), n, layer, 7, 10, session.pool(), two);
    EXPECT_EQ(a.n_fit + a.n_heldout, n);
    EXPECT_EQ(a.n_heldout, n / kCqHoldoutEvery);
    // 175 rows for 256 codes: each row its own centroid, which tells nothing of other rows.
    EXPECT_EQ(a.k_fit, 0.0);
    EXPECT_EQ(a.v_fit, 0.0);
    EXPECT_GT(a.k_heldout, 0.0) << "layer " << layer;
    EXPECT_LT(a.v_heldout, 1.0);
    EXPECT_EQ(a.k_heldout, b.k_heldout);
    EXPECT_EQ(one.key(layer, 0).centroids, two.key(layer, 0).centroids);
    EXPECT_EQ(one.value(layer, 0).centroids, two.value(layer, 0).centroids);
  }
  const std::string path = ::testing::TempDir() + "kestrel_cq_tiny_" + std::to_string(::getpid()) + ".cq1.gguf";
  save_cq_codebooks(path, one);
  EXPECT_EQ(load_cq_codebooks(path, info).value(1, 0).centroids, one.value(1, 0).centroids);
  // Same layout and size, other weights: the sampled tensor bytes differ.
  testing::TinyModelSpec other_spec;
  other_spec.seed = 2;
  testing::LoadedTinyModel other("cq_other", other_spec);
  try {
    load_cq_codebooks(path, cq_model_info(other.model->file()));
    ADD_FAILURE() << "loaded a sidecar made for another model";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("was made for another model: tensor table hash"), std::string::npos) << what;
  }
  std::filesystem::remove(path);
}

// Under the query metric: the session's queries are observed while the text
// fills the cache, the keys get a whitening (the values are learnt as before),
// the sidecar carries it back, and a kv=cq2 session over it runs with a short
// window, its logits close to the F16 cache's.
TEST(CqCalibration, LearnsKeysUnderTheQueryMetricAndRoundTrips) {
  testing::LoadedTinyModel tiny("cq_query_metric");
  const CqModelInfo info = cq_model_info(tiny.model->file());
  Session session(*tiny.model, small_session(2));
  CqQueryMoments queries(info.n_layer, info.n_kv_head, info.k_head_dim, kCq2.channels_per_group);
  session.set_observer(&queries);
  const int64_t n = evaluate_calibration_text(session, testing::tiny_text(), 200);
  session.set_observer(nullptr);
  const int per_kv = tiny.model->config().n_head / tiny.model->config().n_kv_head;
  EXPECT_EQ(queries.queries(info.n_layer - 1, 0), n * per_kv);
  CqCodebooks plain = make_cq_codebooks(kCq2, info), weighted = make_cq_codebooks(kCq2, info);
  for (int layer = 0; layer < info.n_layer; ++layer) {
    learn_cq_layer(session.cache(), n, layer, 7, 10, session.pool(), plain);
    learn_cq_layer(session.cache(), n, layer, 7, 10, session.pool(), weighted, {.queries = &queries});
    EXPECT_TRUE(weighted.key(layer, 0).whitened());
    EXPECT_FALSE(weighted.value(layer, 0).whitened());
    EXPECT_NE(weighted.key(layer, 0).centroids, plain.key(layer, 0).centroids) << layer;
    EXPECT_EQ(weighted.value(layer, 0).centroids, plain.value(layer, 0).centroids) << layer;
  }
  const std::string path = default_cq_sidecar_path(tiny.model->path(), kCq2);
  save_cq_codebooks(path, weighted);
  const CqCodebooks back = load_cq_codebooks(path, info);
  EXPECT_EQ(back.key(1, 0).whitening, weighted.key(1, 0).whitening);
  EXPECT_EQ(back.key(1, 0).centroids, weighted.key(1, 0).centroids);

  EXPECT_EQ(expect_cq_session_close(*tiny.model, DType::CQ2), 1);
  std::filesystem::remove(path);
}

// Rows weighted by the attention they received: both observers on the one
// hook see every query (AttentionObservers); the attention metric covers every
// cached row from position 0; learning from row 16 on fits and measures only
// those rows (the cache's sink rows are never coded), and the weights move the
// centroids away from the uniform ones. Bad options are refused.
TEST(CqCalibration, WeighsRowsByTheirAttentionAndSkipsTheSink) {
  testing::LoadedTinyModel tiny("cq_attention_weights");
  const CqModelInfo info = cq_model_info(tiny.model->file());
  Session session(*tiny.model, small_session(2));
  CqQueryMoments queries(info.n_layer, info.n_kv_head, info.k_head_dim, kCq2.channels_per_group);
  EvictionMetric attention(info.n_layer, info.n_kv_head);
  attention.start(0, 0);
  AttentionObservers both{&queries, nullptr, &attention};
  session.set_observer(&both);
  const int64_t n = evaluate_calibration_text(session, testing::tiny_text(), 200);
  session.set_observer(nullptr);
  const int per_kv = tiny.model->config().n_head / tiny.model->config().n_kv_head;
  EXPECT_EQ(queries.queries(0, 0), n * per_kv);
  // Row r is seen by the queries of positions r..n-1, each giving it p^2 > 0;
  // row 0 by all of them.
  for (int64_t r : {int64_t{0}, int64_t{17}, n - 1}) EXPECT_GT(attention.at(1, 0, r), 0.0f) << r;
  EXPECT_GT(attention.at(1, 0, 0), attention.at(1, 0, n - 1));

  CqCodebooks uniform = make_cq_codebooks(kCq2, info), weighted = make_cq_codebooks(kCq2, info);
  CqLearnOptions skip_sink;
  skip_sink.first_row = 16;
  CqLearnOptions weigh = skip_sink;
  weigh.attention = &attention;
  for (int layer = 0; layer < info.n_layer; ++layer) {
    const CqLayerReport a = learn_cq_layer(session.cache(), n, layer, 7, 10, session.pool(), uniform, skip_sink);
    const CqLayerReport b = learn_cq_layer(session.cache(), n, layer, 7, 10, session.pool(), weighted, weigh);
    EXPECT_EQ(a.n_fit + a.n_heldout, n - 16);
    EXPECT_EQ(a.n_heldout, (n - 16) / kCqHoldoutEvery);
    EXPECT_EQ(b.n_fit, a.n_fit);
    EXPECT_NE(weighted.key(layer, 0).centroids, uniform.key(layer, 0).centroids) << layer;
    EXPECT_NE(weighted.value(layer, 0).centroids, uniform.value(layer, 0).centroids) << layer;
  }
  CqLearnOptions bad = weigh;
  bad.first_row = n;
  EXPECT_THROW(learn_cq_layer(session.cache(), n, 0, 7, 10, session.pool(), weighted, bad), Error);
  bad = weigh;
  bad.attention_floor = -1.0;
  EXPECT_THROW(learn_cq_layer(session.cache(), n, 0, 7, 10, session.pool(), weighted, bad), Error);
  EvictionMetric unobserved(info.n_layer, info.n_kv_head);
  unobserved.start(0, 0);
  bad = weigh;
  bad.attention = &unobserved;
  EXPECT_THROW(learn_cq_layer(session.cache(), n, 0, 7, 10, session.pool(), weighted, bad), Error);
}

// The values' output metric of a layer against its definition, from the tiny
// model's F32 output projection: column j h_d + g c + i of every row, over the
// query heads of the kv head.
TEST(CqCalibration, OutputMomentsSumTheProjectionsColumns) {
  testing::LoadedTinyModel tiny("cq_output_moments");
  const ModelConfig& mc = tiny.model->config();
  const int d = mc.head_dim, c = 4, groups = d / c, per_kv = mc.n_head / mc.n_kv_head;
  const std::vector<double> m = cq_output_moments(tiny.model->file(), 1, mc.n_head, mc.n_kv_head, d, c);
  ASSERT_EQ(m.size(), static_cast<size_t>(mc.n_kv_head) * groups * c * c);
  const gguf::TensorInfo* t = tiny.model->file().find_tensor("blk.1.attn_output.weight");
  ASSERT_TRUE(t && t->type == DType::F32);
  const auto* w = reinterpret_cast<const float*>(t->data);
  const int64_t in = t->ne[0];
  for (int kv = 0; kv < mc.n_kv_head; ++kv)
    for (int g : {0, groups - 1})
      for (int i = 0; i < c; ++i)
        for (int j = 0; j < c; ++j) {
          double want = 0.0;
          for (int64_t r = 0; r < t->ne[1]; ++r)
            for (int h = kv * per_kv; h < (kv + 1) * per_kv; ++h)
              want += double{w[r * in + h * d + g * c + i]} * w[r * in + h * d + g * c + j];
          EXPECT_NEAR(m[((static_cast<size_t>(kv) * groups + g) * c + i) * c + j], want, 1e-9 * (1 + std::fabs(want)));
        }
  EXPECT_THROW(cq_output_moments(tiny.model->file(), mc.n_layer, mc.n_head, mc.n_kv_head, d, c), Error);
}

// Residual stages under the query metric: the moments and whitening are per
// block of c stages channels (moments of cq1's 8-channel groups are refused),
// the books do not depend on the thread count, and a kv=cq1 session reads
// them from the sidecar next to the model with logits close to the F16
// cache's. (That stages pay on rows with structure: kv/cq_residual_test.cpp;
// this random model's rows have little.)
TEST(CqCalibration, LearnsResidualStagesPerBlock) {
  testing::LoadedTinyModel tiny("cq_stages");
  const CqModelInfo info = cq_model_info(tiny.model->file());
  Session session(*tiny.model, small_session(2));
  CqQueryMoments queries(info.n_layer, info.n_kv_head, info.k_head_dim, 32),
      groups(info.n_layer, info.n_kv_head, info.k_head_dim, 8);
  AttentionObservers both{&queries, &groups};
  session.set_observer(&both);
  const int64_t n = evaluate_calibration_text(session, testing::tiny_text(), 200);
  session.set_observer(nullptr);
  CqCodebooks staged = make_cq_codebooks(kCq1, info, 4), again = make_cq_codebooks(kCq1, info, 4);
  ThreadPool pool1(1);
  for (int layer = 0; layer < info.n_layer; ++layer) {
    const CqLayerReport a =
        learn_cq_layer(session.cache(), n, layer, 7, 10, session.pool(), staged, {.queries = &queries});
    learn_cq_layer(session.cache(), n, layer, 7, 10, pool1, again, {.queries = &queries});
    EXPECT_EQ(a.n_fit + a.n_heldout, n);
    EXPECT_GT(a.k_heldout, 0.0);
    EXPECT_EQ(staged.key(layer, 0).whitening.size(), size_t{2} * 32 * 32);  // two blocks of 32 channels
    EXPECT_FALSE(staged.value(layer, 0).whitened());
    EXPECT_EQ(staged.key(layer, 0).centroids, again.key(layer, 0).centroids) << layer;
    EXPECT_EQ(staged.value(layer, 0).centroids, again.value(layer, 0).centroids) << layer;
  }
  EXPECT_NE(error_of([&] {
              learn_cq_layer(session.cache(), n, 0, 7, 10, session.pool(), staged, {.queries = &groups});
            }).find("query moments of groups of 8 channels for blocks of 32"),
            std::string::npos);
  const std::string path = default_cq_sidecar_path(tiny.model->path(), kCq1);
  save_cq_codebooks(path, staged);
  EXPECT_EQ(expect_cq_session_close(*tiny.model, DType::CQ1), 4);
  std::filesystem::remove(path);
}

TEST(CqCalibration, GeneratesTheRequestedPositions) {
  testing::LoadedTinyModel tiny("cq_generate");
  Session session(*tiny.model, small_session(1));
  int lines = 0;
  const std::vector<int32_t> tokens = generate_calibration_text(session, 250, 3, [&](const std::string&) { ++lines; });
  EXPECT_EQ(tokens.size(), size_t{250});
  EXPECT_EQ(session.n_past(), 250);
  EXPECT_GT(lines, 0);
  EXPECT_THROW(generate_calibration_text(session, 1000, 3), Error);  // beyond n_ctx
}

}  // namespace
}  // namespace kestrel
