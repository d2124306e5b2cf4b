#pragma once
// The CQ sidecar: one GGUF file holding every codebook of a model (kv/cq_codebook.h),
// written by `kestrel calibrate kv` next to the model, as llama.cpp users keep
// an imatrix or a LoRA: MODEL.gguf -> MODEL.cq2.gguf / MODEL.cq1.gguf.
//
// Layout (GGUF v3, general.architecture = "kestrel-cq"):
//   kestrel.cq.version              u32, kCqSidecarVersion
//   kestrel.cq.channels_per_group   u32, c
//   kestrel.cq.bits                 u32
//   kestrel.cq.model.architecture   string, the model's general.architecture
//   kestrel.cq.model.block_count, .head_count_kv, .key_length, .value_length   u32
//   kestrel.cq.model.file_bytes     u64, the model file's size
//   kestrel.cq.model.tensor_hash    u64, FNV-1a of the model's tensor table (below)
//   kestrel.cq.exact_layers         u32, version 2+, optional (0): layers kept in F16
//   kestrel.cq.stages               u32, version 4+, optional (1): residual stages s of
//                                   every K and V book (kv/cq_codebook.h); w = c s below
//   cq.k.blk.{layer}.head.{h}, cq.v.blk.{layer}.head.{h}   F32, ne = [2^bits, w, groups]
//                                   (ggml order: the planar [groups][w][n_codes] of CqCodebook).
//                                   Held as F16 once loaded (rounded to nearest even; a value
//                                   F16 cannot hold is refused, naming the tensor); written as
//                                   the F16 values widened, so a file loads back bit for bit
//                                   and builds that held F32 read it unchanged. A whitened
//                                   book's are its whitened centroids E = W C in version 3,
//                                   the centroids C in version 2 (whitened when loaded).
//   cq.kw.blk.{layer}.head.{h}, cq.vw.blk.{layer}.head.{h}   F32, ne = [w, w, groups / s],
//                                   version 2+, each for every (layer, head) or none: the
//                                   whitening K (V) is coded under (kv/cq_whitening.h;
//                                   row-major upper-triangular W per block of w channels)
// Versions 1 (no whitening) to 3 are still read. A file is written at the
// oldest version that holds it (4 with stages, 3 with a whitening, 2 with exact
// layers only, else 1), so older builds read what they can.
// The fingerprint: gguf/sidecar.h.
#include <cstdint>
#include <string>
#include <vector>

#include "kv/cq_codebook.h"

namespace kestrel {

namespace gguf {
class File;
class Writer;
}  // namespace gguf

inline constexpr uint32_t kCqSidecarVersion = 4;  // the newest this build reads and writes

// What a sidecar must match: the model's attention shape and its file's fingerprint.
struct CqModelInfo {
  std::string architecture;
  int n_layer = 0;
  int n_kv_head = 0;
  int k_head_dim = 0;
  int v_head_dim = 0;
  uint64_t file_bytes = 0;
  uint64_t tensor_hash = 0;
  bool operator==(const CqModelInfo&) const = default;
};

// Read from a model's GGUF metadata and tensor table (no weight is read).
CqModelInfo cq_model_info(const gguf::File& model);

// Every codebook of a model.
struct CqCodebooks {
  // The spec of every book of a sidecar. A cache whose keys and values are
  // different CQ types (kv=cq2/cq1) holds a mixed set (mixed_cq_codebooks):
  // `spec` is then the keys' and v's books carry the values' (value_spec()).
  CqSpec spec;
  CqModelInfo model;
  std::vector<CqCodebook> k, v;  // [n_layer][n_kv_head]
  // Layers [0, exact_layers) keep every row's F16 copy and read it, never
  // their codes (kv/kv_cache.h): what the first layers' errors cost the rest.
  int exact_layers = 0;

  CqSpec value_spec() const { return v.empty() ? spec : v.front().spec; }
  const CqCodebook& key(int layer, int head) const { return k[index(layer, head)]; }
  const CqCodebook& value(int layer, int head) const { return v[index(layer, head)]; }
  size_t index(int layer, int head) const { return static_cast<size_t>(layer) * model.n_kv_head + head; }
  // What every codebook holds in memory (CqCodebook::bytes): one model's, shared by the sequences of a cache.
  size_t bytes() const;
};

// All-zero codebooks of the model's shape (checks the spec against both head dims).
CqCodebooks make_cq_codebooks(CqSpec spec, const CqModelInfo& model, int stages = 1);

// The codebooks of a cache whose keys are coded with `keys`' K books and whose
// values with `values`' V books (kv=cq2/cq1: 2-bit keys, 1-bit values; the
// two sidecars of one model). Exact layers: the larger count of the two (a
// layer either file keeps in F16 keeps both K and V). Throws unless both were
// made for the same model. Not a sidecar: cq_sidecar_writer refuses it.
CqCodebooks mixed_cq_codebooks(CqCodebooks keys, CqCodebooks values);

// The sidecar's metadata and tensors, ready to write (tests alter it to make bad
// files). Throws for a mixed set (one file holds one spec).
gguf::Writer cq_sidecar_writer(const CqCodebooks& books);
void save_cq_codebooks(const std::string& path, const CqCodebooks& books);

// Reads a sidecar and checks it against `model`. Throws kestrel::Error naming
// the file and what is wrong: not a GGUF or truncated, not a CQ sidecar, an
// unknown version, a bad spec, made for another model (every field that
// differs, with both values), a missing tensor or one of the wrong type or
// shape, a centroid that does not fit F16.
CqCodebooks load_cq_codebooks(const std::string& path, const CqModelInfo& model);

// What the books of a sidecar hold in memory once loaded, K's and V's
// (CqCodebook::bytes: centroids as F16, whitening as F32), from its tensor
// table alone (no tensor is read or checked): how many stages and whitenings
// a file has is its own. Throws kestrel::Error for a file that does not open
// as a CQ sidecar.
struct CqHeldBytes {
  size_t keys = 0, values = 0;
};
CqHeldBytes cq_sidecar_held_bytes(const std::string& path);

// MODEL.gguf -> MODEL.cq2.gguf (MODEL.cq1.gguf), in the model's directory; a
// name without the .gguf suffix gets ".cq2.gguf" appended.
std::string default_cq_sidecar_path(const std::string& model_path, CqSpec spec);
// `override_path` when given, else the default.
std::string cq_sidecar_path(const std::string& model_path, CqSpec spec, const std::string& override_path);
// The sidecars a cache of CQ keys (k_spec) and values (v_spec) reads: the
// keys' books from cq_sidecar_path(keys_override); the values' from
// `values_override` when given, else from the keys' file when both are one
// spec, else from the values' spec's default. One file when both are the same.
struct CqSidecarPaths {
  std::string keys, values;
};
CqSidecarPaths cq_sidecar_paths(const std::string& model_path, CqSpec k_spec, CqSpec v_spec,
                                const std::string& keys_override, const std::string& values_override);

}  // namespace kestrel
