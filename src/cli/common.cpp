#include "cli/common.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "gguf/gguf.h"
#include "runtime/accuracy_guard.h"
#include "runtime/tune_profile.h"

namespace kestrel::cli {

std::string cached_smollm2_path() {
  std::string cache;
  if (const char* c = std::getenv("KESTREL_CACHE"); c && *c) {
    cache = c;
  } else {
    const char* home = std::getenv("HOME");
    cache = std::string(home ? home : ".") + "/.cache/kestrel";
  }
  return cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string default_model_path() {
  if (const char* m = std::getenv("KESTREL_MODEL"); m && *m) return m;
  return cached_smollm2_path();
}

namespace {

// A flag that is another spelling of a switch: its value becomes name=value.
CLI::Option* add_switch_alias(CLI::App& app, const std::string& flag, const std::string& switch_name,
                              ModelFlags& f, const std::string& help) {
  return app.add_option_function<std::string>(
      flag, [&f, switch_name](const std::string& v) { f.switches.push_back(parse_switch(switch_name + "=" + v)); },
      help + " (= --switch " + switch_name + "=VALUE)");
}

}  // namespace

void add_kv_codebook_flags(CLI::App& app, std::string& keys, std::string& values) {
  app.add_option("--kv-codebook", keys,
                 "kv=cq2 or cq1: the codebook file (default MODEL.cq2.gguf / MODEL.cq1.gguf next to the model; "
                 "`kestrel calibrate kv` writes it); K/V of two CQ types (kv=cq2/cq1): the keys' file");
  app.add_option("--kv-codebook-v", values,
                 "K/V of two CQ types (kv=cq2/cq1): the values' codebook file (default: the values' type's file next "
                 "to the model)");
}

void refuse_unread_cq_codebooks(const std::string& keys, const std::string& values, bool read, std::string_view who,
                                std::string_view what) {
  if (read || (keys.empty() && values.empty())) return;
  fail(who, keys.empty() ? "--kv-codebook-v" : "--kv-codebook", " names a CQ codebook file, but no ", what,
       " uses a CQ cache (kv=cq2, cq1 or cq2/cq1: --cache-type)");
}

std::vector<std::string> llama_cpp_spellings(int argc, const char* const* argv) {
  std::vector<std::string> out;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-ctk") out.emplace_back("--cache-type-k");
    else if (a == "-ctv") out.emplace_back("--cache-type-v");
    else if (a == "-md")
      out.emplace_back("--model-draft");
    else out.push_back(a);
  }
  return out;
}

void add_model_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("-m,--model", f.model, "GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from the cache)");
  app.add_option_function<int>(
      "-t,--threads",
      [&f](int n) {
        if (n < 0) fail("-t must not be negative, got ", n);
        if (n > 0) f.switches.push_back(parse_switch("threads=" + std::to_string(n)));
      },
      "threads (default: one per core; = --switch threads=N)");
  app.add_option("-c,--ctx-size", f.ctx, "context size in tokens (0 = the model's)");
  app.add_option("-b,--batch-size", f.batch, "prompt tokens per forward pass");
  add_switch_alias(app, "--isa", "isa", f, "cap the kernel instruction set: scalar, avx2, avx512");
  add_switch_alias(app, "--cache-type", "kv", f,
                   "KV cache type of keys and values: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, cq2, cq1, or "
                   "K/V of two CQ types, such as cq2/cq1 (2-bit keys, 1-bit values)");
  // -ctk/-ctv (and run's -md) reach these through llama_cpp_spellings (CLI11 takes one-letter short flags only).
  add_switch_alias(app, "--cache-type-k", "kv_k", f, "KV cache type of keys (llama.cpp's -ctk)");
  add_switch_alias(app, "--cache-type-v", "kv_v", f, "KV cache type of values (llama.cpp's -ctv)");
  add_kv_codebook_flags(app, f.kv_codebook, f.kv_codebook_v);
  app.add_option("--cq-window", f.cq_window, "CQ caches: the most recent tokens per head kept in f16 as well")
      ->check(CLI::NonNegativeNumber);
  add_switch_alias(app, "--teal", "teal", f,
                   "TEAL activation sparsity at decode: off or the model-wide share of projection inputs dropped "
                   "(0.25, 0.4, 0.5, ...; thresholds from `kestrel calibrate teal`)");
  app.add_option("--teal-file", f.teal_file,
                 "teal: the thresholds file (default MODEL.teal.gguf next to the model)");
  app.add_option("--teal-max-density", f.teal_max_density,
                 "teal: a decode step keeping more than this share of a projection's inputs reads the dense "
                 "weights instead (default 0.5: where the sparse kernel stopped beating the dense one, bench/micro/sparse_columns_bench.cpp)")
      ->check(CLI::Range(0.0, 1.0));
  add_switch_alias(app, "--kvcompress", "kvcompress", f,
                   "KV-Compress after each prompt: off, RATE (2, 4, 8: keep 1/RATE of the KV blocks, chosen per head "
                   "by the attention they received), window or window:RATE (StreamingLLM: sinks + recent)");
  add_switch_alias(app, "--kv-budget", "kv_budget", f,
                   "KV-Compress: keep at most N positions per (layer, kv head) on average, after each prompt and "
                   "during decode (alone: evicts by the attention metric)");
  app.add_option_function<std::vector<std::string>>(
      "--switch",
      [&f](const std::vector<std::string>& v) {
        for (const auto& text : v) f.switches.push_back(parse_switch(text));
      },
      "technique switch name=value (see `kestrel ab --list`), repeatable");
}

void add_speculative_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("--spec-type", f.spec_type,
                 "speculative decoding: none, draft-simple (a draft model, -md), draft-eagle3 (an EAGLE-3 head, -md), "
                 "ngram-simple (n-gram lookup in the prompt and output), auto (n-gram lookup where it matches, else "
                 "the EAGLE-3 head or draft model if given; draft lengths adapt), qspec (the model's own weights draft "
                 "with 4-bit activations, QSpec) (default: draft-eagle3 or draft-simple with -md, else none)");
  add_draft_flags(app, f.decode);
}

void resolve_eagle3_head(DecodeConfig& d) {
  if (d.draft_model.empty()) return;
  if (gguf::File::open(d.draft_model).get_string("general.architecture").value_or("") != "eagle3") return;
  if (!d.eagle3_head.empty())
    fail("-md ", d.draft_model, " is an EAGLE-3 head and --spec-eagle3-head names another: give one");
  d.eagle3_head = std::move(d.draft_model);
  d.draft_model.clear();
}

void add_draft_flags(CLI::App& app, DecodeConfig& d) {
  app.add_option("--spec-eagle3-head", d.eagle3_head,
                 "EAGLE-3 head for --spec-type draft-eagle3 or auto (-md may name it too; this flag lets a run "
                 "name a draft model and a head, e.g. bench --spec-type draft-simple,draft-eagle3)");
  app.add_option("--model-draft,--spec-draft-model", d.draft_model,
                 "draft model for speculative decoding, also -md (its vocabulary must be the model's)");
  app.add_option("--spec-draft-n-max,--draft-max,--draft", d.draft_max, "tokens drafted per target pass at most")
      ->capture_default_str();
  app.add_option("--spec-branches", d.draft_branches,
                 "draft-simple, draft-eagle3, qspec, auto: draft up to this many branches, the next most likely first "
                 "tokens as alternatives, verified in the same pass (1: a chain; run, chat, bench)")
      ->check(CLI::Range(1, 8));
  app.add_option("--spec-draft-n-min,--draft-min", d.draft_min, "shorter drafts are not verified")
      ->capture_default_str();
  app.add_option("--spec-draft-p-min,--draft-p-min", d.draft_p_min,
                 "draft-simple, draft-eagle3: stop drafting when the draft's top token is less likely than this "
                 "(default: none with adaptive lengths, which stop a draft where the chance that all of it is "
                 "accepted no longer pays for another token; 0.75 with --spec-fixed)");
  app.add_option("--spec-draft-vocab", d.draft_vocab,
                 "draft-simple/qspec: the draft scores only the most frequent tokens of this ranking (`kestrel "
                 "calibrate draft-vocab`), reading that share of its vocabulary projection; still lossless");
  app.add_option("--spec-draft-vocab-n", d.draft_vocab_n, "--spec-draft-vocab: tokens kept (end tokens added)")
      ->capture_default_str();
  app.add_flag_callback("--spec-fixed", [&d] { d.adaptive = false; },
               "draft up to --spec-draft-n-max every round, as llama.cpp does (default: draft lengths chosen from "
               "the acceptance and pass times seen, none where drafting does not pay)");
  app.add_option("--spec-ngram-simple-size-n", d.ngram_n, "ngram-simple: tokens of the n-gram looked up")
      ->capture_default_str();
  app.add_option("--spec-ngram-simple-size-m", d.ngram_m, "ngram-simple: tokens drafted after its last occurrence")
      ->capture_default_str();
}

std::string speculative_summary(const GenerateResult& r) {
  if (r.target_passes == 0) return "";
  std::ostringstream os;
  os.precision(3);
  const double rate = r.drafted > 0 ? 100.0 * static_cast<double>(r.accepted) / static_cast<double>(r.drafted) : 0.0;
  os << "speculative: " << r.drafted << " drafted, " << r.accepted << " accepted (" << rate << " %), "
     << static_cast<double>(r.tokens.size()) / static_cast<double>(r.target_passes) << " tokens per target pass ("
     << r.target_passes << " passes)";
  return os.str();
}

void add_sampling_flags(CLI::App& app, SamplingParams& s, ModelFlags& f) {
  app.add_option("-s,--seed", s.seed, "random seed (default: random)");
  app.add_option("--temp", s.temperature, "temperature (0 = greedy)");
  app.add_option("--top-k", s.top_k, "top-k (0 = off)");
  app.add_option("--top-p", s.top_p, "top-p (1 = off)");
  app.add_option("--min-p", s.min_p, "min-p (0 = off)");
  app.add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1 = off)");
  app.add_option("--repeat-last-n", s.repeat_last_n, "tokens the penalties look back on");
  app.add_option("--frequency-penalty", s.frequency_penalty, "frequency penalty (0 = off)");
  app.add_option("--presence-penalty", s.presence_penalty, "presence penalty (0 = off)");
  add_switch_alias(app, "--sampler", "sampling", f,
                   "sampler: sort (the sort-based reference chain), sortfree (pivot rejection sampling, same "
                   "distribution), auto (the faster: sortfree) (default: auto)");
}

void add_guard_flags(CLI::App& app, GuardFlags& g) {
  app.add_option_function<std::string>(
      "--max-kld", [&g](const std::string& v) { g.budget.max_kld = parse_max_kld(v); },
      "accuracy budget: lossy switches whose mean KL divergence from the exact path exceeds this (nats) are turned "
      "off at start-up");
  app.add_option_function<std::string>(
      "--max-ppl-increase", [&g](const std::string& v) { g.budget.max_ppl_increase = parse_max_ppl_increase(v); },
      "accuracy budget: the largest perplexity increase allowed, in percent (1% or 1)");
  app.add_option_function<std::string>(
      "--min-top1", [&g](const std::string& v) { g.budget.min_top1 = parse_min_top1(v); },
      "accuracy budget: the smallest share of positions whose most likely token must match the exact path's "
      "(0.97 or 97%)");
  app.add_option("--profile", g.profile, "switches from `kestrel tune -o FILE` (checked against this model and CPU)");
  app.add_option("--guard-prompt", g.prompt,
                 "accuracy guard: prompt tokens before the compared decode steps (windowed switches, such as kv=cq2's "
                 "f16 window, act only past their window)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--guard-positions", g.positions, "accuracy guard: decode steps compared with the exact path")
      ->check(CLI::Range(1, 4096));
  app.add_option("--guard-file", g.text_file,
                 "accuracy guard: calibration text (default: a built-in text; not WikiText's test file)");
  app.add_flag("--guard-no-cache", g.no_cache, "accuracy guard: measure again instead of reusing a measurement");
}

std::vector<SwitchSetting> guarded_switches(
    const Model& model, const std::string& model_path, std::vector<SwitchSetting> switches, const GuardFlags& g,
    const std::function<EngineConfig(std::span<const SwitchSetting>)>& make_config, GuardOutcome* outcome) {
  AccuracyBudget budget = g.budget;
  if (!g.profile.empty()) {
    const TuneProfile p = load_profile(g.profile);
    std::vector<SwitchSetting> merged;
    for (const auto& s : p.switches) {
      const bool overridden =
          std::any_of(switches.begin(), switches.end(), [&](const SwitchSetting& x) { return share_a_slot(x, s); });
      if (!overridden) merged.push_back(s);
    }
    merged.insert(merged.end(), switches.begin(), switches.end());
    switches = std::move(merged);
    const std::string stale = profile_mismatch(p, model_path);
    if (stale.empty()) {
      std::cerr << "kestrel: profile " << g.profile << ": " << settings_label(p.switches) << " (tuned for "
                << describe(p.budget) << ": " << p.speedup << "x, " << describe(p.figures) << ")\n";
    } else {
      std::cerr << "kestrel: profile " << g.profile << " was " << stale << ": its switches are measured again against "
                << (budget.any() ? "the budget given" : "its budget") << ", not trusted\n";
      if (!budget.any()) budget = p.budget;
      if (!budget.any()) fail("profile ", g.profile, " is stale and holds no budget to measure it against");
    }
  }
  if (!budget.any()) return switches;
  GuardOptions o;
  o.budget = budget;
  o.probe.n_prompt = g.prompt;
  o.probe.n_positions = g.positions;
  o.model_path = model_path;
  o.cache_dir = g.no_cache ? "" : default_guard_cache_dir();
  if (!g.text_file.empty()) {
    refuse_evaluation_text(g.text_file, "--guard-file");
    o.text = read_file(g.text_file);
  }
  const GuardOutcome out =
      guard_switches(model, switches, make_config, o, [](const std::string& line) { std::cerr << line << "\n"; });
  for (const auto& line : out.log) std::cerr << line << "\n";
  if (outcome) *outcome = out;
  return out.kept;
}

EngineConfig engine_config_with(const ModelFlags& f, std::span<const SwitchSetting> switches) {
  ModelFlags copy = f;
  copy.switches.assign(switches.begin(), switches.end());
  return engine_config(copy);
}

void apply_guard(const Model& model, ModelFlags& f, GuardOutcome* outcome) {
  const std::string path = f.model.empty() ? default_model_path() : f.model;
  f.switches = guarded_switches(
      model, path, f.switches, f.guard, [&f](std::span<const SwitchSetting> s) { return engine_config_with(f, s); },
      outcome);
}

namespace {

void refuse_unread_sidecar_flags(const ModelFlags& f, std::span<const SwitchSetting> also) {
  if (!f.guard.profile.empty()) return;  // the profile's switches may read them
  bool cq = false, teal = false;
  auto note = [&](const SwitchSetting& s) {
    EngineConfig c;
    apply_switch(c, s);
    cq = cq || uses_cq_cache(c);
    teal = teal || c.teal.sparsity > 0.0;
  };
  for (const auto& s : f.switches) note(s);
  for (const auto& s : also) note(s);
  refuse_unread_cq_codebooks(f.kv_codebook, f.kv_codebook_v, cq, "", "setting here");
  if (!teal && !f.teal_file.empty())
    fail("--teal-file names TEAL thresholds, but no setting here uses them (--teal 0.4, ...)");
}

}  // namespace

std::unique_ptr<Model> load_model_verbose(const ModelFlags& f, std::span<const SwitchSetting> also) {
  refuse_unread_sidecar_flags(f, also);
  const std::string path = f.model.empty() ? default_model_path() : f.model;
  if (f.model.empty() && !std::ifstream(path).good())
    fail("no model given and the default model is missing at ", path,
         " (run scripts/fetch_models.sh, or pass -m FILE)");
  const auto t0 = std::chrono::steady_clock::now();
  std::cerr << "kestrel: loading " << path << " ... " << std::flush;
  auto model = load_model(path);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto& c = model->config();
  std::cerr << "done in " << s << " s (" << c.arch << ", " << c.n_layer << " layers, " << c.n_embd << " embd, "
            << c.n_vocab << " vocab, " << model->weight_bytes() / (1024 * 1024) << " MiB)\n";
  return model;
}

EngineConfig engine_config(const ModelFlags& f) {
  EngineConfig c;
  apply_switches(c, f.switches);
  c.kv_codebook = f.kv_codebook;
  c.kv_codebook_v = f.kv_codebook_v;
  c.cq_window = f.cq_window;
  c.teal.file = f.teal_file;
  c.teal.max_density = f.teal_max_density;
  c.decode = f.decode;
  resolve_eagle3_head(c.decode);
  const bool has_draft = !c.decode.draft_model.empty(), has_head = !c.decode.eagle3_head.empty();
  c.decode.policy = !f.spec_type.empty() ? parse_decode_policy(f.spec_type)
                    : has_head           ? DecodePolicy::Eagle3
                    : has_draft          ? DecodePolicy::DraftModel
                                         : DecodePolicy::Plain;
  if (has_draft && c.decode.policy != DecodePolicy::DraftModel && c.decode.policy != DecodePolicy::Auto)
    fail("-md names a draft model, but --spec-type ", f.spec_type, " does not use one");
  if (has_head && c.decode.policy != DecodePolicy::Eagle3 && c.decode.policy != DecodePolicy::Auto)
    fail("an EAGLE-3 head is given, but --spec-type ", f.spec_type, " does not use one (draft-eagle3, auto)");
  return c;
}

SessionOptions session_options(const ModelFlags& f) {
  SessionOptions o;
  o.n_ctx = f.ctx;
  o.n_batch = f.batch;
  o.engine = engine_config(f);
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open file ", path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void write_file(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) fail("cannot write file ", path);
}

void refuse_evaluation_text(const std::string& path, const std::string& what) {
  const std::string name = std::filesystem::path(path).filename().string();
  if (name.find("wiki.test") != std::string::npos)
    fail(what, ": ", path,
         " looks like WikiText-2's test file, which perplexity is measured on; "
         "calibrate on other text (or the model's own, without -f)");
}

}  // namespace kestrel::cli
