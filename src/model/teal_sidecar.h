#pragma once
// The TEAL sidecar: a model's calibrated input thresholds (PAPERS.md card 7),
// written by `kestrel calibrate teal` next to the model as MODEL.teal.gguf and
// read by the engine core under `teal=SPARSITY` (or `--teal-file FILE`).
//
// Layout (GGUF v3, general.architecture = "kestrel-teal"):
//   kestrel.teal.version             u32, kTealSidecarVersion
//   kestrel.teal.model.architecture  string, the model's general.architecture
//   kestrel.teal.model.block_count   u32
//   kestrel.teal.model.file_bytes    u64  } the model file's fingerprint
//   kestrel.teal.model.tensor_hash   u64  } (gguf/sidecar.h)
//   teal.levels      F32 [n_levels]: the model-wide sparsities calibrated, ascending, in (0, 1)
//   teal.thresholds  F32 [7, n_layer, n_levels]: per level, layer and projection
//                    (q, k, v, o, gate, up, down), the |x| at or below which an input is dropped
//   teal.sparsity    F32 [7, n_layer, n_levels]: the share of that projection's inputs the
//                    threshold dropped on the calibration text
#include <cstdint>
#include <string>
#include <vector>

#include "gguf/sidecar.h"
#include "model/activation_sparsity.h"

namespace kestrel {

namespace gguf {
class File;
class Writer;
}  // namespace gguf

inline constexpr uint32_t kTealSidecarVersion = 1;

struct TealTables {
  std::string architecture;
  int n_layer = 0;
  gguf::Fingerprint model;
  std::vector<float> levels;      // ascending model-wide sparsities
  std::vector<float> thresholds;  // [level][layer][projection]
  std::vector<float> sparsity;    // [level][layer][projection]

  size_t index(size_t level, int layer, Projection p) const {
    return (level * static_cast<size_t>(n_layer) + static_cast<size_t>(layer)) * kProjections +
           static_cast<size_t>(p);
  }
  // The level equal to `sparsity` (within 1e-4); throws kestrel::Error listing the levels there are.
  size_t level(double sparsity) const;
  // Level `level`'s thresholds, as a forward pass runs with them.
  ActivationSparsity activation_sparsity(size_t level) const;
};

// Empty tables (no level) for `model`'s file.
TealTables make_teal_tables(const gguf::File& model);

gguf::Writer teal_sidecar_writer(const TealTables& tables);  // tests alter it to make bad files
void save_teal_tables(const std::string& path, const TealTables& tables);

// Reads a sidecar and checks it against `model`. Throws kestrel::Error naming
// the file and what is wrong: not a GGUF or truncated, not a TEAL sidecar, an
// unknown version, made for another model (each field that differs), a
// missing tensor or one of the wrong type or shape, levels out of order or
// outside (0, 1), a threshold that is negative or not finite.
TealTables load_teal_tables(const std::string& path, const gguf::File& model);

// `override_path` when given, else MODEL.teal.gguf next to the model.
std::string teal_sidecar_path(const std::string& model_path, const std::string& override_path);

}  // namespace kestrel
