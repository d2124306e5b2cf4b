// kestrel tune's parts: the candidates, the memory figure, the Pareto front,
// the search on the tiny model, and the profile file (round trip, stale and
// hostile files).
#include "runtime/tune.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "kv/cq_sidecar.h"
#include "platform/cpu.h"
#include "runtime/accuracy_guard.h"
#include "runtime/tune_profile.h"
#include "tiny_model.h"

namespace kestrel {
namespace {

SwitchSetting S(const std::string& text) { return parse_switch(text); }

TEST(Tune, CandidatesAreTheLossyValuesThisCpuRuns) {
  const auto c = tune_candidates();
  for (const auto& s : c) {
    EXPECT_TRUE(is_lossy(s)) << s.label();
    EXPECT_EQ(find_switch(s.name).unsupported(s.value), "") << s.label();
  }
  auto has = [&](const std::string& l) { return std::find(c.begin(), c.end(), S(l)) != c.end(); };
  EXPECT_TRUE(has("kv=q4_0"));
  EXPECT_TRUE(has("act=a4"));
  EXPECT_TRUE(has("teal=0.5"));
  EXPECT_FALSE(has("kv=f16"));
  EXPECT_FALSE(has("isa=scalar"));     // rounding only
  EXPECT_FALSE(has("matmul=vecdot"));  // rounding only
  EXPECT_FALSE(has("sampling=sortfree"));
}

TEST(Tune, MemoryIsWeightsPlusTheKvCacheHeld) {
  testing::LoadedTinyModel tiny("tune_memory");
  const ModelConfig& m = tiny.model->config();
  EngineConfig c;
  const double w = static_cast<double>(tiny.model->weight_bytes());
  // f16: 2 bytes per element, K and V, every layer and KV head.
  EXPECT_DOUBLE_EQ(memory_at_context(*tiny.model, c, 1000), w + 1000.0 * m.n_layer * m.n_kv_head * m.head_dim * 2 * 2);
  c.k_type = c.v_type = DType::Q8_0;  // 34 bytes per 32 elements
  EXPECT_DOUBLE_EQ(memory_at_context(*tiny.model, c, 1000),
                   w + 1000.0 * m.n_layer * m.n_kv_head * (m.head_dim / 32) * 34 * 2);
  c.kv_compress.mode = KvCompressConfig::Mode::Metric;
  c.kv_compress.rate = 4;
  EXPECT_DOUBLE_EQ(memory_at_context(*tiny.model, c, 1000),
                   w + 250.0 * m.n_layer * m.n_kv_head * (m.head_dim / 32) * 34 * 2);
  // cq2: head_dim / 4 code bytes per row for K and V, plus per (layer, kv head)
  // the K and V codebooks (head_dim x 256 F16 each) and the F16 copies of K and
  // V for the 16-row sink and the 128-row window (one block more where it
  // starts inside one), at most the rows held.
  c = EngineConfig{};
  c.k_type = c.v_type = DType::CQ2;
  const double heads = static_cast<double>(m.n_layer) * m.n_kv_head;
  const double books = heads * 2 * m.head_dim * 256 * 2;
  EXPECT_DOUBLE_EQ(memory_at_context(*tiny.model, c, 1000),
                   w + 1000.0 * heads * (m.head_dim / 4) * 2 + books + heads * (128 + 16 + 16) * m.head_dim * 2 * 2);
  EXPECT_DOUBLE_EQ(memory_at_context(*tiny.model, c, 100),
                   w + 100.0 * heads * (m.head_dim / 4) * 2 + books + heads * 100 * m.head_dim * 2 * 2);
  // A sidecar that exists counts as it would be held: here cq1 books in 4
  // residual stages (4 x the centroids) with whitened keys, named by --kv-codebook.
  CqCodebooks staged = make_cq_codebooks(kCq1, cq_model_info(tiny.model->file()), 4);
  for (CqCodebook& b : staged.k) enable_cq_whitening(b);
  const std::string path = ::testing::TempDir() + "kestrel_tune_memory_" + std::to_string(::getpid()) + ".cq1.gguf";
  save_cq_codebooks(path, staged);
  c.k_type = c.v_type = DType::CQ1;
  c.kv_codebook = path;
  const double held = memory_at_context(*tiny.model, c, 100);
  std::filesystem::remove(path);
  EXPECT_EQ(staged.bytes(), static_cast<size_t>(heads) * (2 * m.head_dim * 4 * 256 * 2 + 2 * 32 * 32 * 4));
  EXPECT_DOUBLE_EQ(held, w + 100.0 * heads * (m.head_dim / 8) * 2 + static_cast<double>(staged.bytes()) +
                             heads * 100 * m.head_dim * 2 * 2);
}

TEST(Tune, TheFrontHoldsThePointsNoOtherBeats) {
  auto pt = [](double speed, double kld, bool within) {
    TunePoint p;
    p.speedup = speed;
    p.accuracy.kld = kld;
    p.within = within;
    return p;
  };
  std::vector<TunePoint> v = {pt(1.0, 0.0, true),   pt(1.2, 0.001, true), pt(1.1, 0.002, true),
                              pt(1.3, 0.004, true), pt(2.0, 0.5, false),  pt(1.3, 0.003, true)};
  mark_pareto(v);
  std::vector<bool> front;
  for (const auto& p : v) front.push_back(p.pareto);
  // 1.1 @ 0.002 is beaten by 1.2 @ 0.001; 1.3 @ 0.004 by 1.3 @ 0.003; the
  // over-budget point is never on it.
  EXPECT_EQ(front, (std::vector<bool>{true, true, false, false, false, true}));
}

TEST(Tune, SearchOnTheTinyModel) {
  testing::LoadedTinyModel tiny("tune_search");
  TuneOptions o;
  o.probe.n_prompt = 40;
  o.probe.n_positions = 12;
  o.text = testing::tiny_text();
  o.n_prompt = 16;
  o.n_gen = 4;
  o.reps = 1;
  o.lossless = {S("threads=1")};
  o.candidates = {S("kv_k=q4_0"), S("kv_v=q8_0"), S("kv=cq2")};  // cq2: no codebook next to the tiny model
  // First with no limit, to learn the figures; then a limit between them.
  o.budget.max_kld = 1e9;
  auto make = [](std::span<const SwitchSetting> s) {
    EngineConfig c;
    apply_switches(c, std::vector<SwitchSetting>(s.begin(), s.end()));
    return c;
  };
  const BenchModelInfo info = describe_model(*tiny.model, tiny.path);
  const TuneResult loose = run_tune(*tiny.model, info, make, o);
  ASSERT_GE(loose.points.size(), 3u);
  ASSERT_EQ(loose.skipped.size(), 1u);
  EXPECT_EQ(loose.skipped[0].rfind("kv=cq2", 0), 0u) << loose.skipped[0];
  const double k4 = loose.points[1].accuracy.kld, k8 = loose.points[2].accuracy.kld;
  ASSERT_GT(k4, k8);
  o.budget.max_kld = std::sqrt(k4 * k8);
  const TuneResult tight = run_tune(*tiny.model, info, make, o);
  EXPECT_EQ(tight.points[1].label(), "kv_k=q4_0");
  EXPECT_FALSE(tight.points[1].within);
  EXPECT_EQ(tight.points[1].tg_ts.n, 0);  // over budget: not timed
  EXPECT_TRUE(tight.points[2].within);
  EXPECT_EQ(tight.points[2].tg_ts.n, 1);
  if (tight.best) {
    EXPECT_TRUE(tight.points[*tight.best].within);
    EXPECT_GT(tight.points[*tight.best].speedup, 1.0);
  }
  // kv_k=q4_0 gets its second chance: paired with kv_v=q8_0 (the only value
  // within the budget, another slot), measured, timed only if within.
  int pairs = 0;
  for (const auto& p : tight.points) {
    if (!p.combination) continue;
    const bool has_k4 = std::any_of(p.settings.begin(), p.settings.end(),
                                    [](const SwitchSetting& s) { return s.label() == "kv_k=q4_0"; });
    EXPECT_EQ(has_k4, p.pair) << p.label();  // the greedy part never adds an over-budget value
    if (!p.pair) continue;
    ++pairs;
    EXPECT_EQ(p.label(), "kv_v=q8_0+kv_k=q4_0");
    EXPECT_EQ(p.within, p.accuracy.kld <= o.budget.max_kld);
    EXPECT_EQ(p.tg_ts.n, p.within ? 1 : 0);
    EXPECT_GT(p.accuracy.kld, 0.0);
  }
  EXPECT_EQ(pairs, 1);
  // No second chances asked for: no pair.
  o.max_pairs = 0;
  const TuneResult no_pairs = run_tune(*tiny.model, info, make, o);
  for (const auto& p : no_pairs.points) EXPECT_FALSE(p.pair) << p.label();
  const std::string md = tune_markdown(tight, "tiny.gguf", o.budget);
  EXPECT_NE(md.find("| kv_k=q4_0 | - |"), std::string::npos) << md;
  const std::string svg = tune_svg(tight, "tiny<1>.gguf", o.budget);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("tiny&lt;1&gt;.gguf"), std::string::npos);
  EXPECT_NE(svg.find("kv_v=q8_0"), std::string::npos);
}

TEST(TuneProfile, RoundTripsAndRefusesWhatItCannotTrust) {
  testing::LoadedTinyModel tiny("tune_profile");
  testing::TinyModelSpec other_spec;
  other_spec.seed = 7;
  testing::LoadedTinyModel other("tune_profile_other", other_spec);
  const auto dir = std::filesystem::temp_directory_path();
  const std::string path = (dir / "kestrel_profile_test.json").string();
  TuneProfile p;
  p.model_file = "tiny.gguf";
  p.model_bytes = std::filesystem::file_size(tiny.path);
  p.model_fingerprint = model_file_fingerprint(tiny.path);
  p.cpu = cpu_description();
  p.budget.max_kld = 0.01;
  p.switches = {S("kv=q8_0"), S("threads=1")};
  p.speedup = 1.25;
  p.figures = {0.004, 0.97, 0.002, 64};
  save_profile(p, path);
  const TuneProfile q = load_profile(path);
  EXPECT_EQ(q.switches, p.switches);
  EXPECT_EQ(q.budget, p.budget);
  EXPECT_DOUBLE_EQ(q.figures.kld, 0.004);
  EXPECT_EQ(profile_mismatch(q, tiny.path), "");
  EXPECT_NE(profile_mismatch(q, other.path).find("made for the model file tiny.gguf"), std::string::npos);
  TuneProfile elsewhere = q;
  elsewhere.cpu = "Some Other CPU (avx2)";
  EXPECT_NE(profile_mismatch(elsewhere, tiny.path).find("made on Some Other CPU"), std::string::npos);

  // A profile tuned with a sidecar is stale once the file is written anew or gone.
  EngineConfig cq;
  cq.k_type = cq.v_type = DType::CQ2;
  cq.teal.sparsity = 0.4;
  cq.teal.file = (dir / "kestrel_profile_test.teal.gguf").string();
  const std::vector<std::string> files = config_sidecars(cq, tiny.path);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], default_cq_sidecar_path(tiny.path, kCq2));
  EXPECT_EQ(files[1], cq.teal.file);
  EXPECT_TRUE(config_sidecars(EngineConfig{}, tiny.path).empty());
  EngineConfig two = cq;  // kv=cq2/cq1 reads both types' files
  two.v_type = DType::CQ1;
  two.teal = {};
  EXPECT_EQ(config_sidecars(two, tiny.path), (std::vector<std::string>{default_cq_sidecar_path(tiny.path, kCq2),
                                                                       default_cq_sidecar_path(tiny.path, kCq1)}));
  std::ofstream(files[0]) << "codebooks";
  std::ofstream(files[1]) << "thresholds";
  TuneProfile with_files = q;
  with_files.sidecars = fingerprint_sidecars(files);
  save_profile(with_files, path);
  EXPECT_EQ(load_profile(path).sidecars, with_files.sidecars);
  EXPECT_EQ(profile_mismatch(with_files, tiny.path), "");
  std::ofstream(files[0]) << "codebooks calibrated again";
  EXPECT_NE(profile_mismatch(with_files, tiny.path).find("tuned with the sidecar " + files[0]), std::string::npos);
  std::filesystem::remove(files[0]);
  std::filesystem::remove(files[1]);
  EXPECT_NE(profile_mismatch(with_files, tiny.path).find("which is now missing"), std::string::npos);

  auto refused = [&](const std::string& text, const std::string& expect) {
    std::ofstream(path) << text;
    try {
      load_profile(path);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  refused("{not json", "not JSON");
  refused(R"({"kestrel_profile": 2})", "not a kestrel profile");
  refused(R"({"kestrel_profile": 1, "model": {"file": "a", "bytes": 1, "fingerprint": "x"}, "cpu": "c",
              "budget": {}, "switches": ["warp=9"]})",
          "names warp=9, which this build does not have");
  refused(R"({"kestrel_profile": 1, "model": {"file": "a", "bytes": 1, "fingerprint": "x"}, "cpu": "c",
              "budget": {}, "switches": ["kv=q9_9"]})",
          "names kv=q9_9");
  refused(R"({"kestrel_profile": 1, "model": "a", "cpu": "c", "budget": {}, "switches": []})", "wrong type");
  std::filesystem::remove(path);
  EXPECT_THROW(load_profile(path), Error);
}

}  // namespace
}  // namespace kestrel
