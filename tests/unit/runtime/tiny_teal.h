#pragma once
// TEAL thresholds for a test model: calibrated from a short text (not the one
// the tests score) as `kestrel calibrate teal -f` does, and written as the
// sidecar next to the model file, where the engine finds it.
#include <string>
#include <vector>

#include "model/teal_sidecar.h"
#include "runtime/teal_calibration.h"

namespace kestrel::testing {

inline std::string teal_calibration_text() {
  return "Calibration text, not the text the tests score: a walk along the river in spring, with the birds "
         "singing in the trees and the water running fast over the stones after the rain of the night before. "
         "The path turns north at the old mill, climbs through the beech wood and comes out on the ridge, where "
         "the wind is cold even in May and the view reaches the sea on a clear day. Down in the valley the "
         "farms lie scattered along the road, each with its barn and its orchard, and smoke rises from the "
         "chimneys when the evenings draw in.";
}

inline TealCalibrationReport calibrate_tiny_teal(const Model& model, TealTables& tables,
                                                 std::vector<double> levels = {0.25, 0.5}) {
  const std::vector<int32_t> tokens = model.tokenizer().encode(teal_calibration_text(), true, false);
  TealCalibrationOptions o;
  o.levels = std::move(levels);
  o.block_tokens = 64;
  o.step = 0.05;
  o.n_threads = 2;
  tables = make_teal_tables(model.file());
  return calibrate_teal(model, tokens, o, tables);
}

// Returns the sidecar's path (MODEL.teal.gguf next to the model's file).
inline std::string write_teal_sidecar(const Model& model, std::vector<double> levels = {0.25, 0.5}) {
  TealTables tables;
  calibrate_tiny_teal(model, tables, std::move(levels));
  const std::string path = teal_sidecar_path(model.path(), "");
  save_teal_tables(path, tables);
  return path;
}

}  // namespace kestrel::testing
