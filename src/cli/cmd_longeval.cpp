// kestrel longeval: pass-key retrieval at one or more context lengths
// (runtime/longeval.h), with any engine switch; a markdown table or JSON.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "kv/kv_compress.h"
#include "runtime/longeval.h"
#include "switches/registry.h"

namespace kestrel::cli {

void add_longeval_command(CLI::App& app) {
  struct Opts {
    ModelFlags model;
    std::vector<int64_t> ctx{2048};
    int trials = 50;
    int depths = 10;
    uint64_t seed = 42;
    int answer_tokens = 8;
    bool chat = false;
    std::string chat_template;
    bool no_reuse = false;
    std::string output = "md";
    std::string json_file;
    bool quiet = false;
    std::string kv_compress = "off";
    int64_t kv_budget = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("longeval", "long-context test: pass-key retrieval at given context lengths");
  add_model_flags(*cmd, o->model);
  // -c takes a list here: replace the common single-valued one.
  cmd->remove_option(cmd->get_option("-c"));
  cmd->add_option("-c,--ctx-size", o->ctx, "context lengths in tokens, comma-separated (e.g. 2048,4096,8192)")
      ->delimiter(',');
  cmd->add_option("--trials", o->trials, "trials per context length, spread evenly over the depths (default 50)");
  cmd->add_option("--depths", o->depths, "depths of the key: D points from 0 % to 100 % of the filler (default 10)");
  cmd->add_option("-s,--seed", o->seed, "seed of the keys (default 42)");
  cmd->add_option("-n,--answer-tokens", o->answer_tokens, "greedy tokens generated per trial (default 8)");
  cmd->add_flag("--chat", o->chat, "wrap the prompt in the model's chat template (default: raw text)");
  cmd->add_option("--chat-template", o->chat_template, "with --chat: a built-in template instead of the model's");
  cmd->add_flag("--no-prefix-reuse", o->no_reuse,
                "evaluate every prompt from an empty cache (default: reuse the cached prefix up to the key)");
  cmd->add_option("-o,--output", o->output, "output format: md, json")->check(CLI::IsMember({"md", "json"}));
  cmd->add_option("--json", o->json_file, "also write the JSON report to FILE");
  cmd->add_flag("-q,--quiet", o->quiet, "no progress on stderr");
  cmd->add_option("--kvcompress", o->kv_compress,
                  "KV-Compress after each prompt: off, RATE (2, 4, 8: keep 1/RATE of the KV blocks, chosen per "
                  "head by the attention they received), window or window:RATE (StreamingLLM: sinks + recent)");
  cmd->add_option("--kv-budget", o->kv_budget, "KV-Compress: keep at most this many positions per head on average");
  cmd->callback([o] {
    if (o->trials < 1) fail("longeval: --trials must be at least 1, got ", o->trials);
    if (o->depths < 1) fail("longeval: --depths must be at least 1, got ", o->depths);
    if (o->depths > o->trials)
      std::cerr << "longeval: warning: " << o->depths << " depths but " << o->trials
                << " trials: " << o->depths - o->trials << " depths get none\n";
    for (int64_t c : o->ctx)
      if (c <= 0) fail("longeval: context sizes must be positive, got ", c);
    if (!o->chat && !o->chat_template.empty()) fail("longeval: --chat-template needs --chat");

    LongevalOptions lo;
    lo.n_ctx = o->ctx;
    lo.n_trials = o->trials;
    lo.n_depths = o->depths;
    lo.seed = o->seed;
    lo.n_answer = o->answer_tokens;
    lo.n_batch = o->model.batch;
    lo.chat = o->chat;
    lo.chat_template = o->chat_template;
    lo.reuse_prefix = !o->no_reuse;
    lo.engine = engine_config(o->model);
    lo.kv_compress = o->kv_compress;
    lo.kv_budget = o->kv_budget;
    (void)parse_kv_compress(lo.kv_compress, lo.kv_budget);  // a bad value fails before loading

    auto model = load_model_verbose(o->model);
    check_longeval_options(*model, lo);  // before any work: contexts, flag values

    int64_t last_ctx = -1;
    auto progress = [&](const LongevalProgress& p) {
      if (o->quiet) return;
      if (p.n_ctx != last_ctx) {
        last_ctx = p.n_ctx;
        std::cerr << "longeval: engine: " << engine_settings_text(*p.engine) << "\n";
      }
      const PasskeyTrialResult& t = *p.last;
      char buf[320];
      std::snprintf(buf, sizeof buf,
                    "longeval: c=%lld trial %d/%d depth %3.0f%% key %s -> \"%s\" %s | %d/%d passed (%.1f %%) | "
                    "%lld/%lld tokens evaluated in %.2f s | %.0f s elapsed, ETA %.0f s\n",
                    static_cast<long long>(p.n_ctx), p.trial, p.n_trials, t.trial.depth * 100.0, t.trial.key.c_str(),
                    t.answer.empty() ? "-" : t.answer.c_str(), t.pass ? "pass" : "FAIL", p.passed, p.trial,
                    100.0 * p.passed / p.trial, static_cast<long long>(t.evaluated_tokens),
                    static_cast<long long>(t.prompt_tokens), t.prompt_seconds, p.seconds, p.eta_seconds);
      std::cerr << buf << std::flush;
    };
    const LongevalResult r = run_longeval(*model, lo, progress);
    if (!o->json_file.empty()) {
      std::ofstream out(o->json_file);
      if (!out) fail("longeval: cannot write ", o->json_file);
      out << format_longeval_json(r);
    }
    std::cout << (o->output == "json" ? format_longeval_json(r) : format_longeval_markdown(r)) << std::flush;
  });
}

}  // namespace kestrel::cli
