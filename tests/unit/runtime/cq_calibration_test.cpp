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
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

SessionOptions small_session(int threads) {
  SessionOptions so;
  so.n_ctx = 256;
  so.n_batch = 64;
  so.engine.n_threads = threads;
  return so;
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
