// TEAL (runtime/teal_calibration.h, model/teal_sidecar.h, the engine core's
// `teal` slot) on the tiny model:
//  - the |x| histogram's quantiles against the exact order statistics;
//  - calibration: at every level each block drops exactly that share of its
//    weights, the thresholds drop the target share of the calibration text's
//    inputs and, within 2 points, of the held-out text's;
//  - the sidecar: round trip, and every kind of bad file refused by name;
//  - the engine: prompts stay dense (logits bit for bit), decode steps are
//    thinned (their logits move, by as much as the masked dense product
//    says), the measured sparsity is near the level asked for.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "core/error.h"
#include "gguf/gguf.h"
#include "model/quantize.h"
#include "runtime/session.h"
#include "unit/error_text.h"
#include "unit/runtime/tiny_model.h"
#include "unit/runtime/tiny_teal.h"

namespace kestrel {
namespace {

// The tiny model in Q4_0: nibble codes in the input-major copy.
struct TinyQ4 {
  testing::LoadedTinyModel f32{"teal"};
  std::string path = f32.path + ".q4_0.gguf";
  std::unique_ptr<Model> model;
  TinyQ4() {
    QuantizeOptions qo;
    qo.type = DType::Q4_0;
    qo.pure = true;
    quantize_model(f32.path, path, qo);
    model = load_model(path);
  }
  ~TinyQ4() {
    std::filesystem::remove(path);
    std::filesystem::remove(teal_sidecar_path(path, ""));
  }
};

// The error `f` throws contains `text`.
#define EXPECT_ERROR_HAS(stmt, text)                                               \
  do {                                                                             \
    const std::string err_ = testing::error_of([&] { (void)(stmt); });             \
    EXPECT_NE(err_.find(text), std::string::npos) << "error: " << err_;           \
  } while (0)

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("kestrel_" + std::to_string(::getpid()) + "_" + name)).string();
}

const Model& tiny() {
  static TinyQ4 t;
  return *t.model;
}

TEST(AbsHistogram, QuantilesMatchOrderStatistics) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 2.0f);
  std::vector<float> x(100000);
  for (auto& v : x) v = g(rng);
  x[5] = 0.0f;
  AbsHistogram h;
  h.add(x.data(), static_cast<int64_t>(x.size()));
  std::vector<float> a(x.size());
  std::transform(x.begin(), x.end(), a.begin(), [](float v) { return std::fabs(v); });
  std::sort(a.begin(), a.end());
  for (double s : {0.1, 0.25, 0.5, 0.9}) {
    const float exact = a[static_cast<size_t>(s * static_cast<double>(a.size()))];
    // 64 bins per octave: a bin spans 1.09 % of its values.
    EXPECT_NEAR(h.quantile(s), exact, 0.011 * exact) << s;
    EXPECT_NEAR(h.share_at_most(h.quantile(s)), s, 1e-3) << s;
  }
  EXPECT_EQ(h.quantile(0.0), 0.0f);
  EXPECT_NEAR(h.share_at_most(0.0f), 1e-5, 1e-9);  // the one exact zero
}

TEST(TealCalibration, EveryBlockReachesEachLevelAndHeldOutTextAgrees) {
  TealTables tables;
  const TealCalibrationReport r = testing::calibrate_tiny_teal(tiny(), tables, {0.25, 0.4, 0.5});
  const ModelConfig& c = tiny().config();
  const double E = c.n_embd, q = c.n_head * c.head_dim, kv = c.n_kv_head * c.head_dim, ff = c.n_ff;
  const double w[kProjections] = {E * q, E * kv, E * kv, q * E, E * ff, E * ff, ff * E};
  ASSERT_EQ(tables.levels.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    for (int l = 0; l < c.n_layer; ++l) {
      double attn = 0, attn_w = 0, mlp = 0, mlp_w = 0;
      for (Projection p : kAllProjections) {
        const auto i = static_cast<size_t>(p);
        const double s = tables.sparsity[tables.index(k, l, p)];
        EXPECT_GE(s, 0.0);
        EXPECT_LT(s, 1.0);
        (i < 4 ? attn : mlp) += s * w[i];
        (i < 4 ? attn_w : mlp_w) += w[i];
      }
      EXPECT_NEAR(attn / attn_w, tables.levels[k], 1e-6) << "layer " << l << " level " << k;
      EXPECT_NEAR(mlp / mlp_w, tables.levels[k], 1e-6) << "layer " << l << " level " << k;
    }
    EXPECT_NEAR(r.fitted_sparsity[k], tables.levels[k], 0.01) << k;
    EXPECT_NEAR(r.heldout_sparsity[k], tables.levels[k], 0.02) << k;
    // More sparsity, more error.
    if (k > 0)
      for (const TealLayerReport& lr : r.layers) EXPECT_GE(lr.mlp_error[k], lr.mlp_error[k - 1]);
  }
}

TEST(TealSidecar, RoundTripsAndRefusesBadFiles) {
  TealTables t;
  testing::calibrate_tiny_teal(tiny(), t, {0.3});
  const std::string path = temp_path("teal_sidecar.gguf");
  save_teal_tables(path, t);
  const TealTables back = load_teal_tables(path, tiny().file());
  EXPECT_EQ(back.levels, t.levels);
  EXPECT_EQ(back.thresholds, t.thresholds);
  EXPECT_EQ(back.sparsity, t.sparsity);
  EXPECT_EQ(back.level(0.3), 0u);
  EXPECT_ERROR_HAS(back.level(0.5), "no thresholds calibrated for sparsity 0.5 (the sidecar has 0.3");

  auto refused = [&](const gguf::Writer& w, const std::string& why) {
    w.write(path);
    EXPECT_ERROR_HAS(load_teal_tables(path, tiny().file()), why);
  };
  TealTables other = t;
  other.model.tensor_hash ^= 1;
  refused(teal_sidecar_writer(other), "was made for another model: tensor table hash");
  other = t;
  other.n_layer = 3;
  other.thresholds.resize(other.thresholds.size() / 2 * 3);
  other.sparsity.resize(other.thresholds.size());
  refused(teal_sidecar_writer(other), "block_count 3 (sidecar) vs 2 (model)");
  other = t;
  other.thresholds[4] = -1.0f;
  refused(teal_sidecar_writer(other), "threshold 4 is -1");
  other = t;
  other.levels = {0.3, 0.2};
  other.thresholds.resize(other.thresholds.size() * 2);
  other.sparsity.resize(other.thresholds.size());
  refused(teal_sidecar_writer(other), "levels are not ascending");
  gguf::Writer w = teal_sidecar_writer(t);
  w.set_string("general.architecture", "llama");
  refused(w, "is not a TEAL sidecar");
  // Truncated: the header promises tensors the file does not hold.
  save_teal_tables(path, t);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 16);
  EXPECT_ERROR_HAS(load_teal_tables(path, tiny().file()), "TEAL sidecar " + path);
  std::filesystem::remove(path);
  EXPECT_ERROR_HAS(load_teal_tables(path, tiny().file()), "TEAL sidecar " + path);
}

SessionOptions with_teal(double sparsity, double max_density = TealConfig{}.max_density) {
  SessionOptions so;
  so.n_ctx = 256;
  so.engine.n_threads = 2;
  so.engine.teal.sparsity = sparsity;
  so.engine.teal.max_density = max_density;
  return so;
}

TEST(TealEngine, PromptsStayDenseDecodeStepsAreThinned) {
  static const std::string sidecar = testing::write_teal_sidecar(tiny(), {0.25, 0.5});
  const std::vector<int32_t> prompt = tiny().tokenizer().encode(testing::tiny_text(), true, false);
  const std::vector<int32_t> head(prompt.begin(), prompt.begin() + 40);
  const std::vector<int32_t> next(prompt.begin() + 40, prompt.begin() + 72);

  Session dense(tiny(), with_teal(0.0));
  Session sparse(tiny(), with_teal(0.5, 1.0));  // every decode step on the sparse kernels
  Session masked(tiny(), with_teal(0.5, 0.0));  // every decode step on the dense kernels, masked input
  const auto a = dense.append(head), b = sparse.append(head), c = masked.append(head);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << "a prompt's logits moved under teal";
  ASSERT_NE(sparse.sparsity(), nullptr);
  EXPECT_EQ(sparse.sparsity()->counter.total.load(), 0u) << "a prompt was counted as thinned";

  // The first decode step, over the same (dense) prompt KV: the sparse kernels
  // (F32 inputs) and the dense ones on the masked input (Q8_0 inputs) compute
  // the same product up to the activations' rounding, far from the dense step.
  double moved = 0, apart = 0, mag = 0;
  {
    const auto ld = dense.decode(next[0]), ls = sparse.decode(next[0]), lm = masked.decode(next[0]);
    for (size_t i = 0; i < ld.size(); ++i) {
      moved = std::max(moved, static_cast<double>(std::fabs(ld[i] - ls[i])));
      apart = std::max(apart, static_cast<double>(std::fabs(lm[i] - ls[i])));
      mag = std::max(mag, static_cast<double>(std::fabs(ld[i])));
    }
  }
  EXPECT_GT(moved, 1e-2 * mag) << "decode steps were not thinned";
  EXPECT_LT(apart, 0.2 * moved) << "moved " << moved << ", magnitude " << mag;
  for (size_t i = 1; i < next.size(); ++i) {
    sparse.decode(next[i]);
    masked.decode(next[i]);
  }
  // The thresholds were fitted on other text: the decode steps' share is near the level.
  EXPECT_NEAR(sparse.sparsity()->counter.sparsity(), 0.5, 0.06);
  EXPECT_NEAR(masked.sparsity()->counter.sparsity(), 0.5, 0.06);
}

TEST(TealEngine, RefusesWhatItCannotRun) {
  static const std::string sidecar = testing::write_teal_sidecar(tiny(), {0.25, 0.5});
  EXPECT_ERROR_HAS(Session(tiny(), with_teal(0.4)), "no thresholds calibrated for sparsity 0.4");
  SessionOptions so = with_teal(0.25);
  so.engine.teal.file = sidecar + ".missing";
  EXPECT_ERROR_HAS(Session(tiny(), so), "does not exist (`kestrel calibrate teal -m");
}

}  // namespace
}  // namespace kestrel
