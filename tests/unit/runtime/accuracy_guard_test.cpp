// The accuracy guard: budget parsing, the probe's figures against a brute-force
// computation, the decision rule on given figures, and the whole guard on the
// tiny model with real lossy and lossless switches.
#include "runtime/accuracy_guard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "runtime/perplexity_math.h"
#include "tiny_model.h"

namespace kestrel {
namespace {

TEST(AccuracyBudget, ParsesWhatUsersWrite) {
  EXPECT_DOUBLE_EQ(parse_max_kld("0.01"), 0.01);
  EXPECT_DOUBLE_EQ(parse_max_ppl_increase("1%"), 0.01);
  EXPECT_DOUBLE_EQ(parse_max_ppl_increase("2.5"), 0.025);
  EXPECT_DOUBLE_EQ(parse_min_top1("0.97"), 0.97);
  EXPECT_DOUBLE_EQ(parse_min_top1("97%"), 0.97);
  for (const char* bad : {"", "abc", "0.01x", "-1", "nan", "inf", "1e999"})
    EXPECT_THROW(parse_max_kld(bad), Error) << bad;
  EXPECT_THROW(parse_max_kld("1%"), Error);
  EXPECT_THROW(parse_min_top1("1.5"), Error);
  EXPECT_THROW(parse_max_ppl_increase("%"), Error);
}

TEST(AccuracyBudget, NamesEveryBrokenLimit) {
  AccuracyBudget b;
  b.max_kld = 0.01;
  b.max_ppl_increase = 0.01;
  b.min_top1 = 0.9;
  AccuracyFigures ok{0.005, 0.95, 0.004, 64};
  EXPECT_EQ(over_budget(ok, b), "");
  EXPECT_NEAR(budget_use(ok, b), 0.5, 1e-12);  // KLD at half its limit, top-1 at half, PPL at 0.4
  AccuracyFigures bad{0.02, 0.8, 0.03, 64};
  const std::string why = over_budget(bad, b);
  EXPECT_NE(why.find("KLD 0.02 > 0.01"), std::string::npos) << why;
  EXPECT_NE(why.find("PPL +3.00 % > +1 %"), std::string::npos) << why;
  EXPECT_NE(why.find("top-1 80.0 % < 90 %"), std::string::npos) << why;
  EXPECT_NEAR(budget_use(bad, b), 3.0, 1e-12);
  AccuracyBudget zero;
  zero.max_kld = 0.0;
  EXPECT_EQ(budget_use(AccuracyFigures{}, zero), 0.0);
  EXPECT_TRUE(std::isinf(budget_use(AccuracyFigures{1e-9, 1, 0, 1}, zero)));
}

SwitchSetting S(const std::string& text) { return parse_switch(text); }

// Figures per label; a label absent from the table "cannot run" (throws).
MeasureAccuracyFn table(const std::map<std::string, double>& kld, std::vector<std::string>* asked) {
  return [kld, asked](std::span<const SwitchSetting> s) {
    const std::string label = settings_label(s);
    asked->push_back(label);
    const auto it = kld.find(label);
    if (it == kld.end()) fail("no kernels for ", label);
    return AccuracyFigures{it->second, 1.0, 0.0, 64};
  };
}

std::string log_text(const GuardOutcome& o) {
  std::string log;
  for (const auto& l : o.log) log += l + "\n";
  return log;
}

TEST(DecideSwitches, TurnsOffWhatIsOverBudgetAloneAndTogether) {
  AccuracyBudget b;
  b.max_kld = 0.01;
  std::vector<std::string> asked;
  const std::vector<SwitchSetting> in = {S("threads=1"), S("kv=q8_0"), S("kv_k=q4_0"), S("act=a4"),
                                         S("sampling=sortfree")};
  // kv_k=q4_0 alone is over; kv=q8_0 and act=a4 are within alone but not
  // together, and act=a4 uses more of the budget alone, so it goes.
  const GuardOutcome o = decide_switches(
      in, b, table({{"kv=q8_0", 0.002}, {"kv_k=q4_0", 0.05}, {"act=a4", 0.008}, {"kv=q8_0+act=a4", 0.012}}, &asked));
  // Last, kv_k=q4_0 (over alone) is tried with what is kept; the table has no figures for that pair.
  EXPECT_EQ(asked, (std::vector<std::string>{"kv=q8_0", "kv_k=q4_0", "act=a4", "kv=q8_0+act=a4", "kv=q8_0+kv_k=q4_0"}));
  EXPECT_EQ(o.kept, (std::vector<SwitchSetting>{S("threads=1"), S("kv=q8_0"), S("sampling=sortfree")}));
  EXPECT_EQ(o.dropped, (std::vector<SwitchSetting>{S("kv_k=q4_0"), S("act=a4")}));
  ASSERT_TRUE(o.final_figures);
  EXPECT_DOUBLE_EQ(o.final_figures->kld, 0.002);
  const std::string log = log_text(o);
  EXPECT_NE(log.find("turned off kv_k=q4_0: KLD 0.05"), std::string::npos) << log;
  EXPECT_NE(log.find("turned off act=a4: together KLD 0.012"), std::string::npos) << log;
}

// A low-bit K type far over the budget alone, within it next to attn=sage
// (measured on Qwen2.5-1.5B: KLD 5.5 alone, 0.008 together), is kept; one
// still over the budget with its partner stays off.
TEST(DecideSwitches, KeepsWhatIsOverBudgetAloneButWithinItWithThoseKept) {
  AccuracyBudget b;
  b.max_kld = 0.01;
  std::vector<std::string> asked;
  const std::vector<SwitchSetting> in = {S("kv_k=q4_0"), S("attn=sage"), S("act=a4")};
  const GuardOutcome o = decide_switches(in, b,
                                         table({{"kv_k=q4_0", 5.5},
                                                {"attn=sage", 0.003},
                                                {"act=a4", 0.6},
                                                {"kv_k=q4_0+attn=sage", 0.008},
                                                {"kv_k=q4_0+attn=sage+act=a4", 0.7}},
                                               &asked));
  EXPECT_EQ(asked, (std::vector<std::string>{"kv_k=q4_0", "attn=sage", "act=a4", "kv_k=q4_0+attn=sage",
                                             "kv_k=q4_0+attn=sage+act=a4"}));
  EXPECT_EQ(o.kept, (std::vector<SwitchSetting>{S("kv_k=q4_0"), S("attn=sage")}));
  EXPECT_EQ(o.dropped, (std::vector<SwitchSetting>{S("act=a4")}));
  ASSERT_TRUE(o.final_figures);
  EXPECT_DOUBLE_EQ(o.final_figures->kld, 0.008);
  const std::string log = log_text(o);
  EXPECT_NE(log.find("kept kv_k=q4_0: over budget alone, but with attn=sage KLD 0.008"), std::string::npos) << log;
  EXPECT_NE(log.find("turned off act=a4: KLD 0.6"), std::string::npos) << log;
}

TEST(DecideSwitches, ABudgetNothingMeetsLeavesTheExactPathAndSaysSo) {
  AccuracyBudget b;
  b.min_top1 = 1.0;
  std::vector<std::string> asked;
  const GuardOutcome o = decide_switches(std::vector<SwitchSetting>{S("kv=q4_0"), S("threads=2")}, b,
                                         [&](std::span<const SwitchSetting> s) {
                                           asked.push_back(settings_label(s));
                                           return AccuracyFigures{0.001, 0.98, 0.001, 64};
                                         });
  EXPECT_EQ(o.kept, (std::vector<SwitchSetting>{S("threads=2")}));
  EXPECT_FALSE(o.final_figures);
  EXPECT_NE(o.log.back().find("no lossy switch meets the budget: running the exact path"), std::string::npos);
}

TEST(DecideSwitches, LosslessSwitchesAreNeverMeasured) {
  AccuracyBudget b;
  b.max_kld = 0.0;
  const GuardOutcome o = decide_switches(
      std::vector<SwitchSetting>{S("sampling=sortfree"), S("kv=f16"), S("isa=scalar"), S("matmul=vecdot")}, b,
      [](std::span<const SwitchSetting>) -> AccuracyFigures {
        ADD_FAILURE() << "measured a lossless switch";
        return {};
      });
  EXPECT_EQ(o.kept.size(), 4u);
  EXPECT_FALSE(o.any_lossy);
}

TEST(DecideSwitches, APartnerTurnedOffTakesWhatNeedsItAlong) {
  // attn=X cannot run alone here; with kv=q4_0 turned off it cannot run at all.
  AccuracyBudget b;
  b.max_kld = 0.01;
  std::vector<std::string> asked;
  const GuardOutcome o = decide_switches(std::vector<SwitchSetting>{S("kv=q4_0"), S("attn=sage")}, b,
                                         table({{"kv=q4_0", 0.5}, {"kv=q4_0+attn=sage", 0.5}}, &asked));
  EXPECT_TRUE(o.kept.empty());
  EXPECT_EQ(o.dropped.size(), 2u);
  EXPECT_EQ(asked, (std::vector<std::string>{"kv=q4_0", "attn=sage", "attn=sage"}));
}

// The probe's figures, computed again here in double from logits collected by run_probe.
TEST(AccuracyProbe, FiguresEqualABruteForceComputation) {
  testing::LoadedTinyModel tiny("guard_probe");
  ProbeOptions po;
  po.n_prompt = 40;
  po.n_positions = 12;
  const auto tokens = probe_tokens(*tiny.model, testing::tiny_text(), po);
  EngineConfig exact, lossy;
  exact.n_threads = lossy.n_threads = 1;
  lossy.k_type = lossy.v_type = DType::Q4_0;
  const AccuracyProbe probe(*tiny.model, tokens, exact, po);

  const AccuracyFigures same = probe.compare(exact);
  EXPECT_EQ(same.kld, 0.0);
  EXPECT_EQ(same.top1, 1.0);
  EXPECT_EQ(same.ppl_increase, 0.0);

  std::vector<std::vector<float>> p, q;
  run_probe(*tiny.model, tokens, exact, po, [&](int, std::span<const float> l) { p.emplace_back(l.begin(), l.end()); });
  run_probe(*tiny.model, tokens, lossy, po, [&](int, std::span<const float> l) { q.emplace_back(l.begin(), l.end()); });
  double kld = 0, dnll = 0;
  int same_top = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    auto logsoftmax = [](const std::vector<float>& l) {
      double m = *std::max_element(l.begin(), l.end()), s = 0;
      for (float x : l) s += std::exp(x - m);
      std::vector<double> out;
      for (float x : l) out.push_back(x - m - std::log(s));
      return out;
    };
    const auto lp = logsoftmax(p[j]), lq = logsoftmax(q[j]);
    for (size_t v = 0; v < lp.size(); ++v) kld += std::exp(lp[v]) * (lp[v] - lq[v]);
    const int32_t target = tokens[static_cast<size_t>(po.n_prompt) + j + 1];
    dnll += lp[static_cast<size_t>(target)] - lq[static_cast<size_t>(target)];
    same_top += std::max_element(p[j].begin(), p[j].end()) - p[j].begin() ==
                std::max_element(q[j].begin(), q[j].end()) - q[j].begin();
  }
  const AccuracyFigures f = probe.compare(lossy);
  EXPECT_GT(f.kld, 1e-6);  // q4_0 K and V move the tiny model's logits by several percent
  EXPECT_NEAR(f.kld, kld / 12, 1e-6 + 1e-4 * f.kld);
  EXPECT_NEAR(f.ppl_increase, std::exp(dnll / 12) - 1, 1e-6);
  EXPECT_DOUBLE_EQ(f.top1, same_top / 12.0);
  EXPECT_EQ(f.positions, 12);
}

TEST(AccuracyProbe, ATextTooShortIsAClearError) {
  testing::LoadedTinyModel tiny("guard_short");
  ProbeOptions po;
  po.n_prompt = 5000;
  try {
    probe_tokens(*tiny.model, testing::tiny_text(), po);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calibration text is"), std::string::npos) << e.what();
  }
}

// A sidecar beside the model (a CQ codebook, TEAL thresholds) written anew
// changes the fingerprint, so figures measured with the old file are not reused;
// the same files give the same fingerprint.
TEST(AccuracyGuard, TheFingerprintFollowsTheSidecars) {
  const auto dir = std::filesystem::temp_directory_path() / "kestrel_guard_fingerprint_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string model = (dir / "m.gguf").string(), side = (dir / "m.cq2.gguf").string();
  std::ofstream(model) << "model";
  const std::vector<std::string> sidecars = {side};
  const std::vector<int32_t> tokens = {1, 2, 3};
  auto fingerprint = [&] { return guard_fingerprint(model, sidecars, tokens, ProbeOptions{}, "ctx"); };
  const std::string missing = fingerprint();
  std::ofstream(side) << "codebook";
  const std::string written = fingerprint();
  EXPECT_NE(written, missing);
  EXPECT_EQ(fingerprint(), written);
  std::ofstream(side) << "another codebook";
  EXPECT_NE(fingerprint(), written);
  EXPECT_NE(guard_fingerprint(model, {}, tokens, ProbeOptions{}, "ctx"), fingerprint());
  std::filesystem::remove_all(dir);
}

// The whole guard on a real model: q4_0 KV is turned off under a tight KLD
// budget, q8_0 kept under a loose one, lossless switches always kept, and a
// second run takes the figures from the cache instead of measuring again.
TEST(AccuracyGuard, TurnsOffARealLossySwitchAndReusesItsMeasurement) {
  testing::LoadedTinyModel tiny("guard_real");
  const auto dir = std::filesystem::temp_directory_path() / "kestrel_guard_cache_test";
  std::filesystem::remove_all(dir);
  GuardOptions o;
  o.probe.n_prompt = 48;
  o.probe.n_positions = 16;
  o.model_path = tiny.path;
  o.cache_dir = dir.string();
  o.text = testing::tiny_text();
  auto make = [](std::span<const SwitchSetting> s) {
    EngineConfig c;
    apply_switches(c, std::vector<SwitchSetting>(s.begin(), s.end()));
    return c;
  };
  // Learn the figures first, then set budgets around them.
  o.budget.max_kld = 1e9;
  const std::vector<SwitchSetting> in = {S("threads=1"), S("kv_k=q4_0"), S("kv_v=q8_0"), S("sampling=sortfree")};
  std::vector<std::string> lines;
  const GuardOutcome loose =
      guard_switches(*tiny.model, in, make, o, [&](const std::string& l) { lines.push_back(l); });
  ASSERT_EQ(loose.steps.size(), 3u);  // each alone, then together
  const double k4 = loose.steps[0].figures->kld, k8 = loose.steps[1].figures->kld;
  EXPECT_GT(k4, 10 * k8) << "q4_0 keys should cost far more than q8_0 values";
  EXPECT_EQ(loose.kept, in);

  lines.clear();
  o.budget.max_kld = std::sqrt(k4 * k8);  // between the two
  const GuardOutcome tight =
      guard_switches(*tiny.model, in, make, o, [&](const std::string& l) { lines.push_back(l); });
  EXPECT_EQ(tight.kept, (std::vector<SwitchSetting>{S("threads=1"), S("kv_v=q8_0"), S("sampling=sortfree")}));
  EXPECT_EQ(tight.dropped, (std::vector<SwitchSetting>{S("kv_k=q4_0")}));
  for (const auto& l : lines) EXPECT_NE(l.find("measured before"), std::string::npos) << l;

  // Nothing within a zero budget: the exact path for both.
  o.budget.max_kld = 0.0;
  const GuardOutcome none = guard_switches(*tiny.model, in, make, o);
  EXPECT_EQ(none.kept, (std::vector<SwitchSetting>{S("threads=1"), S("sampling=sortfree")}));

  // A damaged cache file is measured again, not trusted.
  for (const auto& e : std::filesystem::directory_iterator(dir)) std::ofstream(e.path()) << "{not json";
  lines.clear();
  o.budget.max_kld = 1e9;
  guard_switches(*tiny.model, in, make, o, [&](const std::string& l) { lines.push_back(l); });
  bool measured = false;
  for (const auto& l : lines) measured = measured || l.find("measuring kv_k=q4_0") != std::string::npos;
  EXPECT_TRUE(measured);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kestrel
