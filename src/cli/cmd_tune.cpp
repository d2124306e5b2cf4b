// kestrel tune: the fastest combination of lossy switches within an accuracy
// budget on this model and CPU (runtime/tune.h); writes a profile for
// --profile, the table and the chart.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "platform/cpu.h"
#include "runtime/accuracy_guard.h"
#include "runtime/bench.h"
#include "runtime/tune.h"
#include "runtime/tune_profile.h"

namespace kestrel::cli {

void add_tune_command(CLI::App& app) {
  struct Opts {
    ModelFlags model;
    std::string profile_out, out_dir = "tune-out", candidates;
    int n_prompt = 128, n_gen = 64, reps = 3, max_pairs = TuneOptions{}.max_pairs;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "tune", "search the lossy switches this CPU runs for the fastest combination within an accuracy budget");
  add_model_flags(*cmd, o->model);
  add_guard_flags(*cmd, o->model.guard);
  cmd->add_option("-o,--output", o->profile_out, "write the profile here (run, chat, serve, bench: --profile FILE)");
  cmd->add_option("--out-dir", o->out_dir, "where tune.md and tune.svg go");
  cmd->add_option("--candidates", o->candidates,
                  "comma-separated name=value settings to search (default: every lossy value this CPU runs)");
  cmd->add_option("-p,--n-prompt", o->n_prompt, "prompt tokens of the timed request")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-n,--n-gen", o->n_gen, "generated tokens of the timed request")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-r,--repetitions", o->reps, "interleaved speed repetitions")->check(CLI::Range(1, 100));
  cmd->add_option("--max-pairs", o->max_pairs,
                  "second chances: pairs of a value over the budget alone with one within it, measured (0: none)")
      ->check(CLI::Range(0, 1000));
  cmd->callback([o] {
    const GuardFlags& g = o->model.guard;
    if (!g.budget.any()) fail("tune: give a budget (--max-kld, --max-ppl-increase, --min-top1)");
    if (!g.profile.empty()) fail("tune: --profile reads a profile; tune writes one with -o");
    TuneOptions t;
    t.budget = g.budget;
    t.probe.n_prompt = g.prompt;
    t.probe.n_positions = g.positions;
    t.n_prompt = o->n_prompt;
    t.n_gen = o->n_gen;
    t.reps = o->reps;
    t.max_pairs = o->max_pairs;
    if (!g.text_file.empty()) {
      refuse_evaluation_text(g.text_file, "tune --guard-file");
      t.text = read_file(g.text_file);
    }
    for (const auto& s : o->model.switches) {
      // A lossy switch on the command line would be in the exact baseline too.
      if (is_lossy(s)) fail("tune: ", s.label(), " changes the output: give it in --candidates to search it");
      t.lossless.push_back(s);
    }
    if (!o->candidates.empty()) t.candidates = parse_switch_list(o->candidates);
    const std::string path = o->model.model.empty() ? default_model_path() : o->model.model;
    auto model = load_model_verbose(o->model, t.candidates.empty() ? tune_candidates() : t.candidates);
    std::cerr << "tune: CPU " << cpu_description() << "\n";
    const BenchModelInfo info = describe_model(*model, path);
    const ModelFlags flags = o->model;
    const TuneResult r = run_tune(
        *model, info, [&flags](std::span<const SwitchSetting> s) { return engine_config_with(flags, s); }, t,
        [](const std::string& line) { std::cerr << line << "\n"; });

    const std::string name = std::filesystem::path(path).filename().string();
    const std::string md = tune_markdown(r, name, g.budget) + "\nCPU: " + cpu_description() + "\n";
    std::cout << md;
    std::filesystem::create_directories(o->out_dir);
    const auto dir = std::filesystem::path(o->out_dir);
    std::ofstream(dir / "tune.md") << md;
    std::ofstream(dir / "tune.svg") << tune_svg(r, name, g.budget);
    std::cerr << "tune: wrote " << (dir / "tune.md").string() << " and " << (dir / "tune.svg").string() << "\n";
    if (!o->profile_out.empty()) {
      TuneProfile p;
      p.model_file = name;
      p.model_bytes = std::filesystem::file_size(path);
      p.model_fingerprint = model_file_fingerprint(path);
      p.cpu = cpu_description();
      p.budget = g.budget;
      p.switches = t.lossless;
      if (r.best) {
        const TunePoint& best = r.points[*r.best];
        p.switches.insert(p.switches.end(), best.settings.begin(), best.settings.end());
        p.speedup = best.speedup;
        p.figures = best.accuracy;
        p.memory_ratio = best.memory_bytes / r.points[0].memory_bytes;
      } else {
        p.figures.positions = t.probe.n_positions;
      }
      p.sidecars = fingerprint_sidecars(config_sidecars(engine_config_with(flags, p.switches), path));
      save_profile(p, o->profile_out);
      std::cerr << "tune: wrote the profile " << o->profile_out << " ("
                << (p.switches.empty() ? std::string("the exact path") : settings_label(p.switches)) << ")\n";
    }
  });
}

}  // namespace kestrel::cli
