// kestrel bench's library part on the tiny model: the statistics, and the JSON,
// CSV and markdown outputs.
#include "runtime/bench.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "runtime/memory.h"
#include "switches/registry.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

BenchGrid small_grid() {
  BenchGrid g;
  g.n_prompt = {16, 0};
  g.n_gen = {4};
  g.n_threads = {1, 2};
  g.reps = 3;
  return g;
}

std::vector<BenchResult> run_all(const Model& m, const BenchModelInfo& info, const BenchGrid& g) {
  std::vector<BenchResult> out;
  for (const BenchCase& c : bench_cases(g)) out.push_back(run_bench(m, info, c));
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : s) {
    if (ch == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

TEST(Bench, DepthFillsTheCacheBeforeEachTimedRun) {
  BenchGrid g;
  g.n_prompt = {8};
  g.n_gen = {2};
  g.n_depth = {0, 24};
  g.n_threads = {1};
  g.reps = 1;
  g.warmup = false;
  const auto cases = bench_cases(g);
  ASSERT_EQ(cases.size(), 4u);  // per depth: pp then tg
  EXPECT_EQ(cases[0].name(), "pp8");
  EXPECT_EQ(cases[2].name(), "pp8 @ d24");
  EXPECT_EQ(cases[3].name(), "tg2 @ d24");
  const testing::LoadedTinyModel tiny("bench_depth");
  for (const BenchCase& c : cases) {
    const BenchResult r = run_bench(*tiny.model, {}, c);
    EXPECT_EQ(r.test.n_depth, c.n_depth);
    EXPECT_GT(r.avg_ts, 0.0);
  }
  BenchCase bad = cases[3];
  bad.n_depth = -1;
  EXPECT_THROW(run_bench(*tiny.model, {}, bad), Error);
}

TEST(Bench, ParallelSequencesDecodeTogether) {
  BenchGrid g;
  g.n_prompt = {};
  g.n_gen = {4};
  g.n_depth = {0, 8};
  g.n_parallel = {1, 3};
  g.n_threads = {1};
  g.reps = 2;
  const auto cases = bench_cases(g);
  ASSERT_EQ(cases.size(), 4u);
  EXPECT_EQ(cases[1].name(), "tg4 x3");
  EXPECT_EQ(cases[3].name(), "tg4 x3 @ d8");
  const testing::LoadedTinyModel tiny("bench_parallel");
  for (const BenchCase& c : cases) {
    const BenchResult r = run_bench(*tiny.model, {}, c);
    ASSERT_EQ(r.samples_ns.size(), 2u);
    // Tokens/s counts every sequence's tokens.
    EXPECT_NEAR(r.samples_ts[0], 1e9 * 4 * c.n_parallel / static_cast<double>(r.samples_ns[0]), 1e-6 * r.samples_ts[0]);
  }
  BenchCase bad = cases[1];
  bad.text = tiny.model->tokenizer().encode("a text", true, false);
  EXPECT_THROW(run_bench(*tiny.model, {}, bad), Error);  // parallel rows decode random ids
  bad = cases[1];
  bad.n_parallel = 0;
  EXPECT_THROW(run_bench(*tiny.model, {}, bad), Error);
}

TEST(Bench, CasesFollowLlamaBenchOrder) {
  const auto cases = bench_cases(small_grid());
  ASSERT_EQ(cases.size(), 4u);  // per thread count: pp16 then tg4 (size 0 skipped)
  EXPECT_EQ(cases[0].name(), "pp16");
  const SwitchSetting one{"threads", "1"}, two{"threads", "2"};
  EXPECT_NE(std::find(cases[0].switches.begin(), cases[0].switches.end(), one), cases[0].switches.end());
  EXPECT_EQ(cases[1].name(), "tg4");
  EXPECT_NE(std::find(cases[2].switches.begin(), cases[2].switches.end(), two), cases[2].switches.end());
  EXPECT_EQ(cases[3].name(), "tg4");
  BenchCase bad;
  EXPECT_THROW(run_bench(*testing::LoadedTinyModel("bench_bad").model, {}, bad), Error);  // neither pp nor tg
}

TEST(Bench, StatisticsAndModelDescription) {
  testing::LoadedTinyModel tiny("bench_stats");
  const BenchModelInfo info = describe_model(*tiny.model, tiny.path);
  // 2 layers of (q, k, v, o, gate, up, down, 2 norms) + embd, output, output_norm.
  const auto& cfg = tiny.model->config();
  const int64_t E = cfg.n_embd, kv = int64_t{cfg.n_kv_head} * cfg.head_dim, F = cfg.n_ff, V = cfg.n_vocab;
  const uint64_t per_layer = E * E * 2 + E * kv * 2 + 3 * E * F + 2 * E;
  EXPECT_EQ(info.n_params, 2 * per_layer + 2 * E * V + E);
  EXPECT_EQ(info.size, info.n_params * 4);  // all F32
  EXPECT_EQ(info.type, "llama 0M all F32");

  BenchCase c;
  c.n_prompt = 16;
  c.reps = 4;
  int calls = 0;
  const BenchResult r = run_bench(*tiny.model, info, c, [&](const std::string&) { ++calls; });
  EXPECT_EQ(calls, 5);  // warm-up + 4 reps
  ASSERT_EQ(r.samples_ns.size(), 4u);
  ASSERT_EQ(r.samples_ts.size(), 4u);
  double sum = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(r.samples_ts[i], 16e9 / r.samples_ns[i], 1e-9 * r.samples_ts[i]);
    sum += r.samples_ts[i];
  }
  const double mean = sum / 4;
  double ss = 0;
  for (double t : r.samples_ts) ss += (t - mean) * (t - mean);
  EXPECT_NEAR(r.avg_ts, mean, 1e-9 * mean);
  EXPECT_NEAR(r.stddev_ts, std::sqrt(ss / 3), 1e-9 * mean);
  EXPECT_GT(r.peak_rss_bytes, 0u);
  EXPECT_GE(peak_rss_bytes(), current_rss_bytes() / 2);  // sane units (both bytes)
  EXPECT_GE(r.engine.n_threads, 1);
}

TEST(Bench, JsonOutputParses) {
  testing::LoadedTinyModel tiny("bench_json");
  const BenchGrid g = small_grid();
  const BenchModelInfo info = describe_model(*tiny.model, tiny.path);
  const auto results = run_all(*tiny.model, info, g);
  std::ostringstream out;
  auto p = make_bench_printer(BenchFormat::Json, out, g);
  p->header();
  for (const auto& r : results) p->row(r);
  p->footer();

  const nlohmann::json j = nlohmann::json::parse(out.str());
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), results.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& o = j[i];
    for (const char* key : {"model_filename", "model_type", "model_size", "model_n_params", "n_threads", "n_prompt",
                            "n_gen", "avg_ts", "stddev_ts", "samples_ts", "samples_ns", "isa", "kv_type",
                            "peak_rss_bytes", "type_k", "test_time", "backends"})
      EXPECT_TRUE(o.contains(key)) << key;
    EXPECT_EQ(o["model_filename"], tiny.path);
    EXPECT_EQ(o["model_n_params"].get<uint64_t>(), info.n_params);
    EXPECT_EQ(o["n_prompt"].get<int>(), results[i].test.n_prompt);
    EXPECT_EQ(o["n_gen"].get<int>(), results[i].test.n_gen);
    EXPECT_EQ(o["samples_ts"].size(), 3u);
    EXPECT_DOUBLE_EQ(o["avg_ts"].get<double>(), results[i].avg_ts);
    EXPECT_EQ(o["kv_type"], "f16");
    EXPECT_EQ(o["backends"], "CPU");
    EXPECT_EQ(o["switches"]["kv"], "f16");
    EXPECT_EQ(o["switches"]["threads"], std::to_string(results[i].engine.n_threads));
  }
  EXPECT_EQ(j[0]["n_threads"].get<int>(), 1);
  EXPECT_EQ(j[3]["n_threads"].get<int>(), 2);
}

TEST(Bench, CsvHasHeaderAndOneRowPerTest) {
  testing::LoadedTinyModel tiny("bench_csv");
  const BenchGrid g = small_grid();
  const auto results = run_all(*tiny.model, describe_model(*tiny.model, tiny.path), g);
  std::ostringstream out;
  auto p = make_bench_printer(BenchFormat::Csv, out, g);
  p->header();
  for (const auto& r : results) p->row(r);
  p->footer();

  const auto lines = split(out.str(), '\n');
  ASSERT_EQ(lines.size(), 1 + results.size());
  const auto header = split(lines[0], ',');
  EXPECT_EQ(header[0], "backends");
  for (const char* key : {"model_filename", "model_type", "n_prompt", "n_gen", "avg_ts", "stddev_ts", "isa",
                          "kv_type", "peak_rss_bytes"})
    EXPECT_NE(std::find(header.begin(), header.end(), key), header.end()) << key;
  const size_t n_prompt_col = std::find(header.begin(), header.end(), "n_prompt") - header.begin();
  for (size_t i = 0; i < results.size(); ++i) {
    const auto cells = split(lines[i + 1], ',');
    ASSERT_EQ(cells.size(), header.size()) << lines[i + 1];
    for (const auto& c : cells) EXPECT_TRUE(c.size() >= 2 && c.front() == '"' && c.back() == '"') << c;
    EXPECT_EQ(cells[n_prompt_col], "\"" + std::to_string(results[i].test.n_prompt) + "\"");
  }
}

TEST(Bench, MarkdownTable) {
  testing::LoadedTinyModel tiny("bench_md");
  BenchGrid g = small_grid();
  g.n_threads = {1};
  g.kv_types = {"f16", "f32"};
  g.reps = 1;
  const auto results = run_all(*tiny.model, describe_model(*tiny.model, tiny.path), g);
  std::ostringstream out;
  auto p = make_bench_printer(BenchFormat::Markdown, out, g);
  p->header();
  for (const auto& r : results) p->row(r);
  p->footer();
  const auto lines = split(out.str(), '\n');
  ASSERT_GE(lines.size(), 2 + results.size());
  EXPECT_NE(lines[0].find("| model "), std::string::npos);
  EXPECT_NE(lines[0].find("type_k"), std::string::npos);  // shown: two KV types
  EXPECT_NE(lines[0].find("t/s |"), std::string::npos);
  EXPECT_EQ(lines[1].find("| ---"), 0u);
  EXPECT_NE(lines[2].find("pp16"), std::string::npos);
  EXPECT_NE(lines[2].find("all F32"), std::string::npos);
  EXPECT_NE(lines[3].find("tg4"), std::string::npos);
  EXPECT_NE(lines[4].find("f32"), std::string::npos);
  EXPECT_THROW(parse_bench_format("xml"), Error);
  EXPECT_EQ(parse_bench_format("json"), BenchFormat::Json);
}

// Switches set on the grid show in the table: kv_k/kv_v as the type columns,
// the others (not threads or isa, which have theirs) by name=value as they ran.
TEST(Bench, MarkdownShowsTheGridSwitches) {
  testing::LoadedTinyModel tiny("bench_md_switches");
  BenchGrid g = small_grid();
  g.n_threads = {1};
  g.n_prompt = {};
  g.reps = 1;
  g.switches = {parse_switch("kv_k=q8_0"), parse_switch("kv_v=f32"), parse_switch("sampling=sort")};
  const auto results = run_all(*tiny.model, describe_model(*tiny.model, tiny.path), g);
  ASSERT_EQ(results.size(), 1u);
  std::ostringstream out;
  auto p = make_bench_printer(BenchFormat::Markdown, out, g);
  p->header();
  p->row(results[0]);
  const auto lines = split(out.str(), '\n');
  ASSERT_GE(lines.size(), 3u);
  EXPECT_NE(lines[0].find("type_k"), std::string::npos);
  EXPECT_NE(lines[0].find("switches"), std::string::npos);
  EXPECT_NE(lines[2].find("q8_0"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("sampling=sort"), std::string::npos) << lines[2];
  EXPECT_EQ(lines[2].find("kv_k="), std::string::npos) << lines[2];  // in its column, not repeated
}

}  // namespace
}  // namespace kestrel

namespace kestrel {
namespace {

// tg after a text, once per decode policy: exactly N tokens per timed run,
// the speculative counters filled for a drafting policy only, and no
// speculative row without a text.
TEST(Bench, SpeculativeRowsGenerateAfterTheText) {
  testing::LoadedTinyModel tiny("bench_spec");
  const std::string text = testing::tiny_text().substr(0, 200);
  BenchGrid g;
  g.n_prompt = {0};
  g.n_gen = {24};
  g.reps = 2;
  g.n_threads = {1};
  g.policies = {DecodePolicy::Plain, DecodePolicy::NgramSimple};
  g.decode.ngram_n = 1;  // any earlier occurrence of the last token drafts
  g.decode.draft_max = 6;
  g.decode.adaptive = false;  // drafts whatever the tiny model's pass times say
  const auto cases = bench_cases(g);
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[1].decode.policy, DecodePolicy::NgramSimple);
  EXPECT_EQ(cases[1].decode.draft_max, 6);
  EXPECT_THROW(run_bench(*tiny.model, {}, cases[1]), Error);  // no text
  const auto ids = tiny.model->tokenizer().encode(text, true, false);
  for (BenchCase c : cases) {
    c.text = ids;
    const BenchResult r = run_bench(*tiny.model, {}, c);
    EXPECT_EQ(r.samples_ts.size(), 2u);
    EXPECT_EQ(r.generated, 48);  // the timed runs only
    if (c.decode.policy == DecodePolicy::Plain) {
      EXPECT_EQ(r.target_passes, 0);
      EXPECT_EQ(r.test.name(), "tg24 text");
    } else {
      EXPECT_GT(r.drafted, 0);
      EXPECT_LE(r.accepted, r.drafted);
      EXPECT_GT(r.target_passes, 0);
      EXPECT_LE(r.target_passes, r.generated);
      EXPECT_EQ(r.test.name(), "tg24 ngram-simple");
    }
  }
}

}  // namespace
}  // namespace kestrel
