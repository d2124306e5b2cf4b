#pragma once
// kestrel tune: the fastest combination of lossy switches within an accuracy
// budget, on this model and this CPU. Every candidate value is measured alone
// (accuracy against the exact path with runtime/accuracy_probe.h, speed with
// runtime/bench.h interleaved with the baseline); those within the budget
// that are faster are added greedily, fastest first, keeping a combination
// only when it stays within the budget and beats the best so far. Every
// measured point goes into the table and the chart; the Pareto front is
// marked. A value over the budget alone gets a second chance, as in the
// guard (accuracy_guard.h): paired with a value within it (another slot),
// most accurate partners first, up to max_pairs pairs in all; a pair within
// the budget is timed and may become the best. Not 2^n: n singles, at most n
// combinations and max_pairs pairs.
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/accuracy_budget.h"
#include "runtime/accuracy_probe.h"
#include "runtime/bench.h"
#include "runtime/memory_footprint.h"
#include "runtime/scoreboard.h"
#include "switches/registry.h"

namespace kestrel {

struct TuneOptions {
  AccuracyBudget budget;
  ProbeOptions probe;
  std::string text;                          // calibration text ("" = the built-in one)
  std::vector<SwitchSetting> lossless;       // with every configuration (threads, ...)
  std::vector<SwitchSetting> candidates;     // empty: every lossy value this CPU runs (tune_candidates)
  int n_prompt = 128, n_gen = 64, reps = 5;  // the request end-to-end speed is timed on
  int64_t memory_ctx = 8192;                 // the context the memory figure is for
  // A point counts as faster than the baseline (a combination than the best so
  // far) when its speed-up exceeds 1 by this and by two standard errors:
  // smaller gains are inside these machines' noise.
  double min_gain = 0.02;
  // Pairs of an over-budget value with a within-budget one whose accuracy is
  // measured (their figures go into the table either way).
  int max_pairs = 8;
};

struct TunePoint {
  std::vector<SwitchSetting> settings;  // empty: the exact baseline
  AccuracyFigures accuracy;
  Measured pp_ts, tg_ts;
  double speedup = 1.0;       // end-to-end: n_prompt/pp + n_gen/tg against the baseline's
  double speedup_se = 0.0;    // its standard error, from the repetitions' spread
  double memory_bytes = 0.0;  // weights + KV cache at memory_ctx (after eviction), from the layout
  bool within = true;         // within the budget
  bool pareto = false;        // no other point is both faster and more accurate (KLD)
  bool combination = false;
  bool pair = false;  // combination: an over-budget value with a within-budget one (the second chance)
  std::string label() const;
};

struct TuneResult {
  std::vector<TunePoint> points;     // points[0]: the baseline
  std::optional<size_t> best;        // the fastest within budget (none faster than the baseline: empty)
  std::vector<std::string> skipped;  // "teal=0.5: no thresholds file ..."
  std::string settings;              // one line: sizes, reps, probe
  double min_gain = 0.0;             // TuneOptions::min_gain, for the conclusion
};

// Every value of every switch that is lossy (accuracy_guard.h is_lossy) and
// that this CPU runs, except integer-valued switches (kv_budget).
std::vector<SwitchSetting> tune_candidates();

using TuneProgressFn = std::function<void(const std::string&)>;
TuneResult run_tune(const Model& model, const BenchModelInfo& info,
                    const std::function<EngineConfig(std::span<const SwitchSetting>)>& make_config,
                    const TuneOptions& o, const TuneProgressFn& progress = {});

// Marks the Pareto front (speed-up up, KLD down) among the points within budget and the baseline.
void mark_pareto(std::vector<TunePoint>& points);

std::string tune_markdown(const TuneResult& r, const std::string& model_name, const AccuracyBudget& budget);
// Speed-up against KLD, one point per measured configuration, the front joined.
std::string tune_svg(const TuneResult& r, const std::string& model_name, const AccuracyBudget& budget);

}  // namespace kestrel
