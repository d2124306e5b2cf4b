#pragma once
// The profile `kestrel tune -o FILE` writes and `--profile FILE` reads: the
// switches of the fastest combination within a budget, for one model file on
// one CPU, with the figures they were chosen on. A small JSON file:
//   {"kestrel_profile": 1, "model": {"file", "bytes", "fingerprint"}, "cpu",
//    "budget": {"max_kld", "max_ppl_increase", "min_top1"}, "switches": [...],
//    "measured": {"speedup", "kld", "top1", "ppl_increase", "memory_ratio"},
//    "sidecars": [{"path", "fingerprint"}]}   (optional: the files the switches read)
#include <string>
#include <vector>

#include "runtime/accuracy_budget.h"
#include "switches/engine_config.h"
#include "switches/registry.h"

namespace kestrel {

struct TuneProfile {
  std::string model_file;  // the file name, for messages
  uint64_t model_bytes = 0;
  std::string model_fingerprint;  // model_file_fingerprint()
  std::string cpu;                // cpu_description()
  AccuracyBudget budget;
  std::vector<SwitchSetting> switches;
  double speedup = 1.0, memory_ratio = 1.0;
  AccuracyFigures figures;
  // The sidecars the switches read when tuned (a CQ codebook, TEAL thresholds)
  // and their model_file_fingerprint(): recalibrating one makes the profile stale.
  struct Sidecar {
    std::string path, fingerprint;
    bool operator==(const Sidecar&) const = default;
  };
  std::vector<Sidecar> sidecars;
};

// The file's size and a hash of its first and last MiB (header, metadata and
// the tensors at both ends): the same for a copy, different for another quantization.
std::string model_file_fingerprint(const std::string& path);

void save_profile(const TuneProfile& p, const std::string& path);
// Throws kestrel::Error naming the file and the problem: unreadable, not a
// profile, a switch or value this build lacks.
TuneProfile load_profile(const std::string& path);

// The sidecar files an engine with `config` reads (resolved beside
// model_path unless named): the CQ codebooks of kv=cq2, cq1 or K/V such as cq2/cq1, TEAL's thresholds.
std::vector<std::string> config_sidecars(const EngineConfig& config, const std::string& model_path);
// Those files with their fingerprints, for TuneProfile::sidecars (throws
// kestrel::Error when one cannot be read).
std::vector<TuneProfile::Sidecar> fingerprint_sidecars(const std::vector<std::string>& paths);

// "" when the profile was made for this model file on this CPU with the same
// sidecars; otherwise what differs ("made for qwen.gguf, this is smol.gguf").
std::string profile_mismatch(const TuneProfile& p, const std::string& model_path);

}  // namespace kestrel
