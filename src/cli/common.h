#pragma once
// Flags shared by the subcommands, spelled as llama.cpp spells them.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "model/model.h"
#include "runtime/accuracy_guard.h"
#include "runtime/session.h"
#include "sampling/params.h"
#include "switches/registry.h"

namespace kestrel::cli {

// $KESTREL_MODEL, else the SmolLM2 file that scripts/fetch_models.sh puts in
// $KESTREL_CACHE/models (default ~/.cache/kestrel/models).
std::string default_model_path();
// The SmolLM2 file in the cache, whatever KESTREL_MODEL says.
std::string cached_smollm2_path();

// The accuracy budget and tuned profile (run, chat, serve, bench).
struct GuardFlags {
  AccuracyBudget budget;
  std::string profile;    // --profile: switches from `kestrel tune -o`
  int prompt = ProbeOptions{}.n_prompt;  // --guard-prompt: tokens before the compared steps
  int positions = ProbeOptions{}.n_positions;  // --guard-positions: decode steps compared
  bool no_cache = false;  // --guard-no-cache: measure again
  std::string text_file;  // --guard-file: calibration text ("" = built in)
};

struct ModelFlags {
  std::string model;
  int64_t ctx = 4096;
  int batch = 512;
  // Every engine setting, whichever flag spelled it: -t N is threads=N, --isa X
  // is isa=X, --cache-type X is kv=X, --sampler X is sampling=X, and
  // --switch name=value is itself (one parser: switches/registry.h).
  std::vector<SwitchSetting> switches;
  // CQ caches: the codebook sidecars (empty: next to the model) and the F16 window.
  std::string kv_codebook;
  std::string kv_codebook_v;
  int64_t cq_window = 128;
  // teal=S: the thresholds sidecar (empty: next to the model) and the dense fallback's density.
  std::string teal_file;
  double teal_max_density = TealConfig{}.max_density;
  // Speculative decoding (run, chat, bench: add_speculative_flags). spec_type
  // empty: draft-simple when a draft model is given, none otherwise (llama.cpp's rule).
  std::string spec_type;
  DecodeConfig decode;
  GuardFlags guard;
};

// -m, -c, -b, and the engine flags above.
void add_model_flags(CLI::App& app, ModelFlags& f);
// argv with llama.cpp's multi-letter short flags (-ctk, -ctv, -md) spelled as their
// long forms, which CLI11 can declare (it takes one-letter short flags only).
std::vector<std::string> llama_cpp_spellings(int argc, const char* const* argv);
// --kv-codebook (the keys' CQ sidecar, or both sides' for one type) and
// --kv-codebook-v (the values' for K/V of two CQ types), into these strings.
void add_kv_codebook_flags(CLI::App& app, std::string& keys, std::string& values);
// Refuses those flags when `read` is false (no setting of the command uses a CQ
// cache): accepted, they would be ignored. `who`: the command's prefix ("ab: ",
// or empty); `what`: what none of uses a CQ cache ("setting here", "row", "test").
void refuse_unread_cq_codebooks(const std::string& keys, const std::string& values, bool read, std::string_view who,
                                std::string_view what);
// llama.cpp's speculative decoding flags: --spec-type, -md, --spec-draft-n-max, ...
void add_speculative_flags(CLI::App& app, ModelFlags& f);
// The same without --spec-type (bench takes a list of them).
void add_draft_flags(CLI::App& app, DecodeConfig& d);
// llama.cpp takes an EAGLE-3 head with -md: a draft_model that is one moves to eagle3_head.
void resolve_eagle3_head(DecodeConfig& d);
// "speculative: 812 drafted, 640 accepted (78.8 %), 3.1 tokens per target pass" (empty for plain decoding).
std::string speculative_summary(const GenerateResult& r);
// --sampler (a spelling of sampling=) goes into f; the rest into s.
void add_sampling_flags(CLI::App& app, SamplingParams& s, ModelFlags& f);

// --max-kld, --max-ppl-increase, --min-top1, --profile, --guard-*.
void add_guard_flags(CLI::App& app, GuardFlags& g);
// Applies --profile and the accuracy budget to `switches` for a loaded model:
// a profile's switches join them (a switch given on the command line wins);
// a profile made for another model file or CPU is measured again against its
// budget, not trusted; with a budget, the accuracy guard turns off lossy
// switches over it (runtime/accuracy_guard.h), logging why to stderr.
// `make_config` builds a configuration from settings (with the host's sidecar paths).
std::vector<SwitchSetting> guarded_switches(
    const Model& model, const std::string& model_path, std::vector<SwitchSetting> switches, const GuardFlags& g,
    const std::function<EngineConfig(std::span<const SwitchSetting>)>& make_config, GuardOutcome* outcome = nullptr);
// The same for a ModelFlags host: rewrites f.switches. `outcome`: what the
// guard decided (any_lossy false when it did not run).
void apply_guard(const Model& model, ModelFlags& f, GuardOutcome* outcome = nullptr);

// Loads the model, saying so. First refuses a sidecar flag (--kv-codebook,
// --kv-codebook-v, --teal-file) that no setting asked for reads: the flags'
// switches, `also` (tune's candidates), or a --profile's (not checked).
std::unique_ptr<Model> load_model_verbose(const ModelFlags& f, std::span<const SwitchSetting> also = {});
// The engine configuration the flags ask for (defaults + every setting, in order).
EngineConfig engine_config(const ModelFlags& f);
SessionOptions session_options(const ModelFlags& f);
// engine_config(f) with `switches` in place of f.switches (the accuracy guard,
// tune and serve's running check build configurations of other settings).
EngineConfig engine_config_with(const ModelFlags& f, std::span<const SwitchSetting> switches);

// Reads a whole file (for -f); throws kestrel::Error if it cannot.
std::string read_file(const std::string& path);
// Writes a whole file; throws kestrel::Error if it cannot.
void write_file(const std::string& path, std::string_view content);
// Calibration (codebooks, thresholds, AWQ scales) learnt on the evaluation
// text would flatter every perplexity measured with it: throws for a file
// named like WikiText-2's test file. `what`: the command, for the message.
void refuse_evaluation_text(const std::string& path, const std::string& what);

}  // namespace kestrel::cli
