#pragma once
// TEAL calibration (PAPERS.md card 7): thresholds for each projection's input
// such that a decoder layer drops a target share of its inputs (weighted by
// the weights they would read) where that costs its blocks the least output
// error. `kestrel calibrate teal` is the command around it.
//
//  1. Statistics: text goes through a session (the model's own generations by
//     default, never the evaluation text) while a ProjectionObserver keeps a
//     histogram of |x| per (layer, projection input); the last 20 % of the
//     positions are held out to check the thresholds on text they did not see.
//  2. Greedy allocation, per block (attention: q, k, v, o; MLP: gate, up,
//     down), as TEAL does it: starting dense, each step raises the sparsity
//     of whichever projection adds the least block-output error (squared L2
//     against the dense block, on inputs recorded from the first
//     `block_tokens` positions; the attention block's error on the last
//     quarter of them), each step dropping the same share of the block's
//     weights. The allocation is recorded as the block passes each level, so
//     one search gives every level.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/teal_sidecar.h"
#include "runtime/session.h"

namespace kestrel {

struct TealCalibrationOptions {
  std::vector<double> levels = {0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7};  // ascending, in (0, 1)
  int64_t block_tokens = 512;  // positions the greedy search evaluates blocks on
  double step = 0.025;         // block sparsity added per greedy step
  int n_threads = 0;
};

// |x| histograms of one projection input: log-spaced bins (64 per octave,
// 2^-32 .. 2^32), zeros in bin 0.
class AbsHistogram {
 public:
  void add(const float* x, int64_t n);
  uint64_t count() const { return total_; }
  // The |x| at or below which a share `s` of the values lie (0 for s <= 0).
  float quantile(double s) const;
  // The share of the values at or below t.
  double share_at_most(float t) const;

 private:
  std::vector<uint64_t> bins_ = std::vector<uint64_t>(kBins, 0);
  uint64_t total_ = 0;
  static constexpr int kPerOctave = 64;
  static constexpr int kBins = 64 * kPerOctave + 1;
};

struct TealLayerReport {
  int layer = 0;
  // At each level: the allocation [kProjections] and both blocks' relative output errors |Δy|² / |y|².
  std::vector<std::vector<float>> sparsity;
  std::vector<double> attention_error, mlp_error;
  double seconds = 0.0;
};

struct TealCalibrationReport {
  std::vector<TealLayerReport> layers;
  std::vector<double> heldout_sparsity;  // per level: the weighted share dropped on the held-out positions
  std::vector<double> fitted_sparsity;   // per level: the same on the positions the thresholds came from
  int64_t positions = 0, heldout_positions = 0;
};

using TealProgressFn = std::function<void(const std::string& line)>;

// Fills `tables` (make_teal_tables of the model's file) with options.levels
// and their thresholds, learnt from `tokens` (one text, evaluated from an
// empty cache in a session of its own). Throws for an architecture without
// Model::run_block, bad levels, or too few tokens.
TealCalibrationReport calibrate_teal(const Model& model, const std::vector<int32_t>& tokens,
                                     const TealCalibrationOptions& options, TealTables& tables,
                                     const TealProgressFn& progress = {});

}  // namespace kestrel
