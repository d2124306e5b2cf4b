#pragma once
// Flags shared by the subcommands, spelled as llama.cpp spells them.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "model/model.h"
#include "runtime/session.h"
#include "sampling/params.h"

namespace kestrel::cli {

// $KESTREL_MODEL, else the SmolLM2 file that scripts/fetch_models.sh puts in
// $KESTREL_CACHE/models (default ~/.cache/kestrel/models).
std::string default_model_path();
// The SmolLM2 file in the cache, whatever KESTREL_MODEL says.
std::string cached_smollm2_path();

struct ModelFlags {
  std::string model;
  int threads = 0;
  int64_t ctx = 4096;
  int batch = 512;
  std::string isa;       // "" = best
  std::string kv_type = "f16";
  std::vector<std::string> switches;  // name=value, applied last
};

void add_model_flags(CLI::App& app, ModelFlags& f);
void add_sampling_flags(CLI::App& app, SamplingParams& s);

std::unique_ptr<Model> load_model_verbose(const ModelFlags& f);
SessionOptions session_options(const ModelFlags& f);
// The --switch settings that change generation (sampling=...), onto s.
void apply_generation_switches(const ModelFlags& f, SamplingParams& s);

// Reads a whole file (for -f); throws kestrel::Error if it cannot.
std::string read_file(const std::string& path);

}  // namespace kestrel::cli
