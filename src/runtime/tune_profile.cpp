#include "runtime/tune_profile.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "core/hash.h"
#include "kv/cq_codebook.h"
#include "kv/cq_sidecar.h"
#include "model/teal_sidecar.h"
#include "platform/cpu.h"

namespace kestrel {

std::string model_file_fingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open model file ", path);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  Fnv1a h;
  h.u64(size);
  std::vector<char> buf(1 << 20);
  for (uint64_t start : {uint64_t{0}, size > buf.size() ? size - buf.size() : uint64_t{0}}) {
    in.seekg(static_cast<std::streamoff>(start));
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.bytes(buf.data(), static_cast<size_t>(in.gcount()));
    in.clear();
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h.h));
  return out;
}

void save_profile(const TuneProfile& p, const std::string& path) {
  nlohmann::json j;
  j["kestrel_profile"] = 1;
  j["model"] = {{"file", p.model_file}, {"bytes", p.model_bytes}, {"fingerprint", p.model_fingerprint}};
  j["cpu"] = p.cpu;
  nlohmann::json b = nlohmann::json::object();
  if (p.budget.max_kld) b["max_kld"] = *p.budget.max_kld;
  if (p.budget.max_ppl_increase) b["max_ppl_increase"] = *p.budget.max_ppl_increase;
  if (p.budget.min_top1) b["min_top1"] = *p.budget.min_top1;
  j["budget"] = b;
  j["switches"] = nlohmann::json::array();
  for (const auto& s : p.switches) j["switches"].push_back(s.label());
  j["measured"] = {
      {"speedup", p.speedup},   {"memory_ratio", p.memory_ratio},         {"kld", p.figures.kld},
      {"top1", p.figures.top1}, {"ppl_increase", p.figures.ppl_increase}, {"positions", p.figures.positions}};
  if (!p.sidecars.empty()) {
    j["sidecars"] = nlohmann::json::array();
    for (const auto& f : p.sidecars) j["sidecars"].push_back({{"path", f.path}, {"fingerprint", f.fingerprint}});
  }
  std::ofstream out(path);
  if (!out) fail("cannot write profile ", path);
  out << j.dump(2) << "\n";
}

TuneProfile load_profile(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("profile ", path, ": cannot open it");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    fail("profile ", path, ": not JSON (", e.what(), ")");
  }
  TuneProfile p;
  try {
    if (!j.is_object() || j.value("kestrel_profile", 0) != 1)
      fail("not a kestrel profile (version 1; `kestrel tune -o FILE` writes one)");
    const auto& m = j.at("model");
    p.model_file = m.at("file").get<std::string>();
    p.model_bytes = m.at("bytes").get<uint64_t>();
    p.model_fingerprint = m.at("fingerprint").get<std::string>();
    p.cpu = j.at("cpu").get<std::string>();
    const auto& b = j.at("budget");
    if (b.contains("max_kld")) p.budget.max_kld = b.at("max_kld").get<double>();
    if (b.contains("max_ppl_increase")) p.budget.max_ppl_increase = b.at("max_ppl_increase").get<double>();
    if (b.contains("min_top1")) p.budget.min_top1 = b.at("min_top1").get<double>();
    for (const auto& s : j.at("switches")) {
      const std::string text = s.get<std::string>();
      try {
        p.switches.push_back(parse_switch(text));
      } catch (const Error& e) {
        fail("names ", text, ", which this build does not have (", e.what(), ")");
      }
    }
    if (j.contains("measured")) {
      const auto& f = j.at("measured");
      p.speedup = f.value("speedup", 1.0);
      p.memory_ratio = f.value("memory_ratio", 1.0);
      p.figures.kld = f.value("kld", 0.0);
      p.figures.top1 = f.value("top1", 1.0);
      p.figures.ppl_increase = f.value("ppl_increase", 0.0);
      p.figures.positions = f.value("positions", 0);
    }
    if (j.contains("sidecars"))
      for (const auto& f : j.at("sidecars"))
        p.sidecars.push_back({f.at("path").get<std::string>(), f.at("fingerprint").get<std::string>()});
  } catch (const Error& e) {
    fail("profile ", path, ": ", e.what());
  } catch (const std::exception& e) {
    fail("profile ", path, ": a field is missing or of the wrong type (", e.what(), ")");
  }
  return p;
}

std::vector<std::string> config_sidecars(const EngineConfig& config, const std::string& model_path) {
  std::vector<std::string> out;
  if (uses_cq_cache(config)) {  // what cq_store reads (runtime/engine_core.cpp)
    const CqSidecarPaths p =
        cq_sidecar_paths(model_path, parse_cq_spec(dtype_name(config.k_type)), parse_cq_spec(dtype_name(config.v_type)),
                         config.kv_codebook, config.kv_codebook_v);
    out.push_back(p.keys);
    if (p.values != p.keys) out.push_back(p.values);
  }
  if (config.teal.sparsity > 0.0) out.push_back(teal_sidecar_path(model_path, config.teal.file));
  return out;
}

std::vector<TuneProfile::Sidecar> fingerprint_sidecars(const std::vector<std::string>& paths) {
  std::vector<TuneProfile::Sidecar> out;
  for (const std::string& path : paths) out.push_back({path, model_file_fingerprint(path)});
  return out;
}

std::string profile_mismatch(const TuneProfile& p, const std::string& model_path) {
  std::string why;
  const std::string name = std::filesystem::path(model_path).filename().string();
  if (const std::string here = model_file_fingerprint(model_path); here != p.model_fingerprint)
    why = "made for the model file " + p.model_file + " (" + p.model_fingerprint + "), this is " + name + " (" + here +
          ")";
  if (p.cpu != cpu_description())
    why += (why.empty() ? "" : "; ") + std::string("made on ") + p.cpu + ", this is " + cpu_description();
  for (const auto& f : p.sidecars) {
    std::string here = "missing";
    if (std::filesystem::exists(f.path)) here = model_file_fingerprint(f.path);
    if (here != f.fingerprint)
      why += (why.empty() ? "" : "; ") + std::string("tuned with the sidecar ") + f.path + " (" + f.fingerprint +
             "), which is now " + (here == "missing" ? here : "another file (" + here + ")");
  }
  return why;
}

}  // namespace kestrel
