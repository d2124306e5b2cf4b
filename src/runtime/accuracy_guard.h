#pragma once
// The accuracy guard: given the switches a user asked for and an accuracy
// budget (runtime/accuracy_budget.h), measures each lossy switch alone and the
// lossy ones together against the exact path (runtime/accuracy_probe.h), turns
// off those over the budget, and says which and why with the figures.
// Lossless switches (threads, isa, matmul, sampling, speculative decoding)
// are never touched: they cannot move a distribution.
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/accuracy_budget.h"
#include "runtime/accuracy_probe.h"
#include "switches/registry.h"

namespace kestrel {

// A switch value whose effect can move the next-token distributions (Logits,
// Thins, Evicts in switches/registry.h).
bool is_lossy(const SwitchSetting& s);

// Accuracy of a set of lossy settings on top of the lossless ones. Throws
// kestrel::Error when the settings do not fit together (a KV type an
// attention algorithm has no kernels for).
using MeasureAccuracyFn = std::function<AccuracyFigures(std::span<const SwitchSetting> lossy)>;

struct GuardStep {
  std::vector<SwitchSetting> settings;     // what was measured (one switch, or the ones kept together)
  std::optional<AccuracyFigures> figures;  // empty: could not run on its own (why: `note`)
  std::string note;                        // "over budget: ...", "within budget", "needs ..."
};

struct GuardOutcome {
  std::vector<SwitchSetting> kept;     // every lossless setting and the lossy ones within budget, in input order
  std::vector<SwitchSetting> dropped;  // lossy settings turned off
  std::vector<GuardStep> steps;        // every measurement, in order
  std::optional<AccuracyFigures> final_figures;  // of the kept lossy settings together (none kept: empty)
  bool any_lossy = false;
  // Human-readable lines for the log, one per step and a conclusion.
  std::vector<std::string> log;
};

// The decision alone: each lossy setting is measured by itself and turned off
// when over the budget; the rest are measured together and, while the
// combination is over the budget, the one using most of the budget alone is
// turned off too. A budget nothing meets leaves the exact path, and says so.
GuardOutcome decide_switches(std::span<const SwitchSetting> settings, const AccuracyBudget& budget,
                             const MeasureAccuracyFn& measure);

// The running check's choice (serve, runtime/running_check.h): of the lossy
// settings in `running`, the one that used most of the budget alone at
// start-up (`outcome`'s measurements; unmeasured ones first), leaving out
// those that evict KV blocks (a slot policy the server cannot change while
// running). Empty when nothing can be turned off.
std::optional<SwitchSetting> next_to_turn_off(const GuardOutcome& outcome, std::span<const SwitchSetting> running,
                                              const AccuracyBudget& budget);

// Identifies a measurement so a later run may reuse it: the model file and each
// sidecar a switch may read (path, size, time written; a missing one by its
// path: recalibrating a codebook or threshold file next to the model makes its
// switch's figures stale), the CPU, this executable, the probe's tokens and
// size, and the lossless settings everything is measured with.
std::string guard_fingerprint(const std::string& model_path, std::span<const std::string> sidecars,
                              std::span<const int32_t> tokens, const ProbeOptions& o, const std::string& context);

// Measurements kept in a JSON file per fingerprint under `dir` ("" = none
// kept): label ("kv=q4_0+attn=sage") -> figures. A file that does not parse
// or names another fingerprint is ignored (re-measured), never trusted.
class AccuracyCache {
 public:
  AccuracyCache(std::string dir, std::string fingerprint);
  std::optional<AccuracyFigures> find(const std::string& label) const;
  void store(const std::string& label, const AccuracyFigures& f);  // writes the file
  const std::string& path() const { return path_; }

 private:
  std::string path_, fingerprint_;
  std::vector<std::pair<std::string, AccuracyFigures>> entries_;
};

// "$KESTREL_CACHE/guard" (default ~/.cache/kestrel/guard).
std::string default_guard_cache_dir();

struct GuardOptions {
  AccuracyBudget budget;
  ProbeOptions probe;
  std::string model_path;  // for the fingerprint
  std::string cache_dir;   // "" = measure every time
  std::string text;        // calibration text ("" = probe_calibration_text())
};

// Runs the guard on a loaded model. `make_config` builds the engine
// configuration of a list of settings (with the host's sidecar paths).
// `progress` gets a line before each measurement.
GuardOutcome guard_switches(const Model& model, std::span<const SwitchSetting> settings,
                            const std::function<EngineConfig(std::span<const SwitchSetting>)>& make_config,
                            const GuardOptions& o, const std::function<void(const std::string&)>& progress = {});

}  // namespace kestrel
