// The TEAL sidecar GGUF: write, read and check (model/teal_sidecar.h).
#include "model/teal_sidecar.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "gguf/gguf.h"

namespace kestrel {
namespace {

constexpr const char* kArchitecture = "kestrel-teal";

}  // namespace

size_t TealTables::level(double s) const {
  for (size_t i = 0; i < levels.size(); ++i)
    if (std::fabs(levels[i] - s) < 1e-4) return i;
  std::ostringstream have;
  for (size_t i = 0; i < levels.size(); ++i) have << (i ? ", " : "") << levels[i];
  fail("teal: no thresholds calibrated for sparsity ", s, " (the sidecar has ", levels.empty() ? "none" : have.str(),
       "; `kestrel calibrate teal --sparsity ", s, "` adds them)");
}

ActivationSparsity TealTables::activation_sparsity(size_t lvl) const {
  ActivationSparsity a;
  a.n_layer = n_layer;
  const auto first = thresholds.begin() + static_cast<std::ptrdiff_t>(index(lvl, 0, Projection::Q));
  a.threshold.assign(first, first + static_cast<std::ptrdiff_t>(n_layer) * kProjections);
  return a;
}

TealTables make_teal_tables(const gguf::File& model) {
  TealTables t;
  t.architecture = model.require_string("general.architecture");
  t.n_layer = static_cast<int>(model.require_u64(t.architecture + ".block_count"));
  t.model = gguf::fingerprint(model);
  return t;
}

gguf::Writer teal_sidecar_writer(const TealTables& t) {
  gguf::Writer w;
  w.set_string("general.architecture", kArchitecture);
  w.set_u32("kestrel.teal.version", kTealSidecarVersion);
  w.set_string("kestrel.teal.model.architecture", t.architecture);
  w.set_u32("kestrel.teal.model.block_count", static_cast<uint32_t>(t.n_layer));
  w.set_u64("kestrel.teal.model.file_bytes", t.model.file_bytes);
  w.set_u64("kestrel.teal.model.tensor_hash", t.model.tensor_hash);
  const auto n = static_cast<int64_t>(t.levels.size());
  w.add_tensor("teal.levels", DType::F32, {n}, gguf::bytes_of<float>(t.levels));
  w.add_tensor("teal.thresholds", DType::F32, {kProjections, t.n_layer, n}, gguf::bytes_of<float>(t.thresholds));
  w.add_tensor("teal.sparsity", DType::F32, {kProjections, t.n_layer, n}, gguf::bytes_of<float>(t.sparsity));
  return w;
}

void save_teal_tables(const std::string& path, const TealTables& t) { teal_sidecar_writer(t).write(path); }

TealTables load_teal_tables(const std::string& path, const gguf::File& model) {
  const std::string where = "TEAL sidecar " + path;
  const gguf::File f = gguf::open_sidecar(path, "TEAL", kArchitecture);
  const auto version = f.get_u64("kestrel.teal.version");
  if (!version) fail(where, ": no kestrel.teal.version");
  if (*version != kTealSidecarVersion)
    fail(where, ": unknown version ", *version, " (this build reads version ", kTealSidecarVersion, ")");

  const TealTables want = make_teal_tables(model);
  TealTables t;
  try {
    t.architecture = f.require_string("kestrel.teal.model.architecture");
    t.n_layer = static_cast<int>(f.require_u64("kestrel.teal.model.block_count"));
    t.model.file_bytes = f.require_u64("kestrel.teal.model.file_bytes");
    t.model.tensor_hash = f.require_u64("kestrel.teal.model.tensor_hash");
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  std::ostringstream diff;
  auto compare = [&](const char* field, const auto& sidecar, const auto& mine) {
    if (!(sidecar == mine))
      diff << (diff.tellp() > 0 ? "; " : "") << field << " " << sidecar << " (sidecar) vs " << mine << " (model)";
  };
  compare("architecture", t.architecture, want.architecture);
  compare("block_count", t.n_layer, want.n_layer);
  compare("file size", t.model.file_bytes, want.model.file_bytes);
  compare("tensor table hash", t.model.tensor_hash, want.model.tensor_hash);
  if (diff.tellp() > 0)
    fail(where, " was made for another model: ", diff.str(), " (run `kestrel calibrate teal` for this one)");

  auto read = [&](const char* name, std::vector<int64_t> ne, std::vector<float>& to) {
    const gguf::TensorInfo* ti = f.find_tensor(name);
    if (!ti) fail(where, ": missing tensor ", name);
    if (ti->type != DType::F32 || ti->ne != ne)
      fail(where, ": tensor ", name, " is ", dtype_name(ti->type), " ", gguf::shape_text(ti->ne), ", expected ",
           dtype_name(DType::F32), " ", gguf::shape_text(ne));
    size_t n = 1;
    for (int64_t d : ne) n *= static_cast<size_t>(d);
    to.resize(n);
    if (n) std::memcpy(to.data(), ti->data, n * sizeof(float));
  };
  const gguf::TensorInfo* lv = f.find_tensor("teal.levels");
  if (!lv) fail(where, ": missing tensor teal.levels");
  if (lv->ne.size() != 1) fail(where, ": tensor teal.levels is ", gguf::shape_text(lv->ne), ", expected one dimension");
  const int64_t n = lv->ne[0];
  read("teal.levels", {n}, t.levels);
  read("teal.thresholds", {kProjections, t.n_layer, n}, t.thresholds);
  read("teal.sparsity", {kProjections, t.n_layer, n}, t.sparsity);
  for (size_t i = 0; i < t.levels.size(); ++i) {
    const float s = t.levels[i];
    if (!(s > 0.0f && s < 1.0f)) fail(where, ": level ", i, " is ", s, ", not a sparsity in (0, 1)");
    if (i > 0 && !(s > t.levels[i - 1])) fail(where, ": levels are not ascending (", t.levels[i - 1], ", ", s, ")");
  }
  for (size_t i = 0; i < t.thresholds.size(); ++i)
    if (!std::isfinite(t.thresholds[i]) || t.thresholds[i] < 0.0f)
      fail(where, ": threshold ", i, " is ", t.thresholds[i], ", not a finite value >= 0");
  return t;
}

std::string teal_sidecar_path(const std::string& model_path, const std::string& override_path) {
  return override_path.empty() ? gguf::default_sidecar_path(model_path, "teal") : override_path;
}

}  // namespace kestrel
