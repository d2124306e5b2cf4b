// kestrel bench: tokens/s of prompt processing and generation, like llama-bench
// (runtime/bench.h), printed as a markdown table, JSON or CSV.
#include <algorithm>
#include <iostream>
#include <string>
#include <tuple>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/bench.h"

namespace kestrel::cli {

void add_bench_command(CLI::App& app) {
  struct Opts {
    std::vector<std::string> models;
    std::vector<int> n_prompt{512};
    std::vector<int> n_gen{128};
    std::vector<int> n_parallel{1};
    std::vector<int> n_depth{0};
    std::vector<int> threads{0};
    std::vector<std::string> isas;
    std::vector<std::string> switches;
    std::vector<std::string> kv_types;
    std::string kv_codebook, kv_codebook_v;
    int reps = 5;
    int batch = 2048;
    std::string output = "md";
    bool no_warmup = false;
    bool progress = false;
    std::string text_file;
    std::vector<std::string> spec_types;
    DecodeConfig decode;
    GuardFlags guard;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("bench", "benchmark prompt processing and generation speed (like llama-bench)");
  cmd->add_option("-m,--model", o->models, "GGUF model file(s); repeat or separate with commas")->delimiter(',');
  cmd->add_option("-p,--n-prompt", o->n_prompt, "prompt sizes (pp tests), comma-separated")->delimiter(',');
  cmd->add_option("-n,--n-gen", o->n_gen, "generated token counts (tg tests), comma-separated")->delimiter(',');
  cmd->add_option("--parallel,-P,--npl", o->n_parallel,
                  "tg tests: sequences decoding together, one token each per forward pass (llama-batched-bench's "
                  "-npl), comma-separated; tokens/s counts them all")
      ->delimiter(',');
  cmd->add_option("-d,--n-depth", o->n_depth,
                  "context depths: tokens in the cache before each timed run, comma-separated (llama-bench's -d)")
      ->delimiter(',');
  cmd->add_option("-t,--threads", o->threads, "thread counts, comma-separated (default: all cores)")->delimiter(',');
  cmd->add_option("-r,--repetitions", o->reps, "timed runs per test")->check(CLI::Range(1, 1000000));
  cmd->add_option("-b,--batch-size", o->batch, "prompt tokens per forward pass")->check(CLI::Range(1, 1 << 20));
  add_kv_codebook_flags(*cmd, o->kv_codebook, o->kv_codebook_v);
  cmd->add_option("--switch", o->switches, "technique switches name=value (kestrel ab lists them), repeatable");
  cmd->add_option("--isa", o->isas, "kernel instruction sets: scalar, avx2, avx512 (default: best)")->delimiter(',');
  cmd->add_option("--cache-type", o->kv_types,
                  "KV cache types of K and V: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, cq2, cq1, cq2/cq1 (each = "
                  "--switch kv=TYPE)")
      ->delimiter(',');
  // One value each (not a grid axis): other spellings of their switches, as in run, chat and serve.
  for (const auto& [flag, name, what] :
       {std::tuple{"--cache-type-k", "kv_k", "KV cache type of keys (llama-bench's -ctk)"},
        std::tuple{"--cache-type-v", "kv_v", "KV cache type of values (llama-bench's -ctv)"},
        std::tuple{"--kvcompress", "kvcompress",
                   "KV-Compress after each prompt (the depth included): off, 2, 4, 8, "
                   "window, window:RATE"},
        std::tuple{"--kv-budget", "kv_budget", "KV-Compress budget: positions per (layer, kv head)"}}) {
    const std::string switch_name = name;
    cmd->add_option_function<std::string>(
        flag, [o, switch_name](const std::string& v) { o->switches.push_back(switch_name + "=" + v); },
        std::string(what) + " (= --switch " + switch_name + "=VALUE)");
  }
  cmd->add_option("-f,--file", o->text_file,
                  "tg tests generate greedily after this file's text instead of feeding random ids (speculative "
                  "decoding needs it)");
  cmd->add_option("--spec-type", o->spec_types,
                  "decode policies to compare in tg tests, comma-separated: none, draft-simple, draft-eagle3, "
                  "ngram-simple, auto, qspec "
                  "(default with -md: none,draft-simple)")
      ->delimiter(',');
  add_draft_flags(*cmd, o->decode);
  add_guard_flags(*cmd, o->guard);
  cmd->add_option("-o,--output", o->output, "output format: md, json, csv")
      ->check(CLI::IsMember({"md", "json", "csv"}));
  cmd->add_flag("--no-warmup", o->no_warmup, "skip the warm-up run");
  cmd->add_flag("--progress", o->progress, "print progress to stderr");
  cmd->callback([o] {
    BenchGrid grid;
    grid.n_prompt = o->n_prompt;
    grid.n_gen = o->n_gen;
    grid.n_parallel = o->n_parallel;
    grid.n_depth = o->n_depth;
    grid.n_threads = o->threads;
    grid.n_batch = o->batch;
    grid.reps = o->reps;
    grid.warmup = !o->no_warmup;
    for (const auto& sw : o->switches) grid.switches.push_back(parse_switch(sw));
    grid.kv_types.clear();
    // Checked as the switches they spell (kv=, isa=), so the errors are the same.
    for (const auto& k : o->kv_types) grid.kv_types.push_back(parse_switch("kv=" + k).value);
    for (const auto& name : o->isas) {
      EngineConfig probe;
      apply_switch(probe, parse_switch("isa=" + name));
      grid.isas.push_back(probe.isa);
    }
    resolve_eagle3_head(o->decode);
    grid.decode = o->decode;
    for (const auto& name : o->spec_types) grid.policies.push_back(parse_decode_policy(name));
    if (grid.policies.empty() && !o->decode.eagle3_head.empty())
      grid.policies = {DecodePolicy::Plain, DecodePolicy::Eagle3};
    if (grid.policies.empty() && !o->decode.draft_model.empty())
      grid.policies = {DecodePolicy::Plain, DecodePolicy::DraftModel};
    for (int t : grid.n_threads)
      if (t < 0) fail("bench: thread count must not be negative, got ", t);
    const std::vector<BenchCase> cases = bench_cases(grid);
    if (cases.empty()) fail("bench: nothing to run (all -p and -n values are 0)");
    // A profile's switches may read the codebook flags; otherwise some test must.
    const auto uses_cq = [](const BenchCase& c) {
      EngineConfig e = c.engine;  // as run_case configures it
      apply_switches(e, c.switches);
      return uses_cq_cache(e);
    };
    refuse_unread_cq_codebooks(o->kv_codebook, o->kv_codebook_v,
                               !o->guard.profile.empty() || std::any_of(cases.begin(), cases.end(), uses_cq),
                               "bench: ", "test");
    std::vector<std::string> models = o->models;
    if (models.empty()) models.push_back(default_model_path());

    auto printer = make_bench_printer(parse_bench_format(o->output), std::cout, grid);
    printer->header();
    for (size_t m = 0; m < models.size(); ++m) {
      if (o->progress) std::cerr << "kestrel bench: loading " << models[m] << "\n";
      auto model = load_model(models[m]);
      const BenchModelInfo info = describe_model(*model, models[m]);
      std::vector<int32_t> text;
      if (!o->text_file.empty()) text = model->tokenizer().encode(read_file(o->text_file), true, true);
      for (size_t i = 0; i < cases.size(); ++i) {
        BenchCase c = cases[i];
        if (c.n_gen > 0) c.text = text;
        c.engine.kv_codebook = o->kv_codebook;
        c.engine.kv_codebook_v = o->kv_codebook_v;
        // The budget and profile apply to each test's switches (measured once per set: the guard's cache).
        if (o->guard.budget.any() || !o->guard.profile.empty())
          c.switches = guarded_switches(*model, models[m], c.switches, o->guard, [](std::span<const SwitchSetting> s) {
            EngineConfig e;
            apply_switches(e, std::vector<SwitchSetting>(s.begin(), s.end()));
            return e;
          });
        BenchProgressFn progress;
        if (o->progress) {
          progress = [&, i, m](const std::string& what) {
            std::cerr << "kestrel bench: model " << m + 1 << "/" << models.size() << ", test " << i + 1 << "/"
                      << cases.size() << " (" << cases[i].name() << "): " << what << "\n";
          };
        }
        printer->row(run_bench(*model, info, c, progress));
      }
    }
    printer->footer();
  });
}

}  // namespace kestrel::cli
