// kestrel longeval: pass-key retrieval at one or more context lengths
// (runtime/longeval.h), with any engine switch; a markdown table or JSON.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/long_ppl.h"
#include "runtime/longeval.h"
#include "switches/registry.h"

namespace kestrel::cli {

namespace {

template <class Opts>
void run_ppl(const Opts& o) {
  LongPplOptions po;
  po.chunk = o.chunk;
  po.n_batch = o.model.batch;
  po.engine = engine_config(o.model);
  const std::string text = read_file(o.ppl_file);
  auto model = load_model_verbose(o.model);
  const auto articles = wikitext_articles(text);
  const auto docs = join_documents(model->tokenizer(), articles, o.doc_tokens, o.doc_max, o.docs);
  if (!o.quiet)
    std::cerr << "longeval: " << articles.size() << " articles in " << o.ppl_file << " -> " << docs.size()
              << " documents of " << o.doc_tokens << " to " << o.doc_max << " tokens\n";
  auto progress = [&](int doc, int n_docs, const LongPplDoc& d, double seconds) {
    if (o.quiet) return;
    char buf[200];
    std::snprintf(buf, sizeof buf, "longeval: document %d/%d: %lld tokens, PPL %.4f, %.1f s elapsed\n", doc, n_docs,
                  static_cast<long long>(d.tokens), std::exp(d.nll_sum / static_cast<double>(d.scored)), seconds);
    std::cerr << buf << std::flush;
  };
  const LongPplResult r = run_long_ppl(*model, docs, po, progress);
  const std::string name = !model->config().name.empty() ? model->config().name : model->config().arch;
  if (!o.json_file.empty()) {
    std::ofstream out(o.json_file);
    if (!out) fail("longeval: cannot write ", o.json_file);
    out << format_long_ppl_json(r, name);
  }
  std::cout << (o.output == "json" ? format_long_ppl_json(r, name) : format_long_ppl_markdown(r, name)) << std::flush;
}

}  // namespace

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
    bool ppl = false;
    std::string ppl_file = "../shared/data/wikitext-2-raw/wiki.test.raw";
    int64_t doc_tokens = 4096;
    int64_t doc_max = 8192;
    int docs = 4;
    int64_t chunk = 512;
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
  cmd->add_flag("--ppl", o->ppl,
                "long-document perplexity instead of pass-key: WikiText-2 articles joined into documents, evaluated "
                "in chunks with KV-Compress between chunks (runtime/long_ppl.h)");
  cmd->add_option("--ppl-file", o->ppl_file,
                  "--ppl: the WikiText file (default ../shared/data/wikitext-2-raw/wiki.test.raw)");
  cmd->add_option("--doc-tokens", o->doc_tokens,
                  "--ppl: articles are joined until a document has this many tokens (default 4096)");
  cmd->add_option("--doc-max", o->doc_max, "--ppl: and cut at this many (default 8192)");
  cmd->add_option("--docs", o->docs, "--ppl: documents to evaluate (default 4; 0: all)");
  cmd->add_option("--chunk", o->chunk, "--ppl: tokens per evaluation; eviction runs after each (default 512)");
  cmd->callback([o] {
    if (o->trials < 1) fail("longeval: --trials must be at least 1, got ", o->trials);
    if (o->depths < 1) fail("longeval: --depths must be at least 1, got ", o->depths);
    if (o->depths > o->trials)
      std::cerr << "longeval: warning: " << o->depths << " depths but " << o->trials
                << " trials: " << o->depths - o->trials << " depths get none\n";
    for (int64_t c : o->ctx)
      if (c <= 0) fail("longeval: context sizes must be positive, got ", c);
    if (!o->chat && !o->chat_template.empty()) fail("longeval: --chat-template needs --chat");
    if (o->ppl) {
      run_ppl(*o);
      return;
    }

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
    lo.engine = engine_config(o->model);  // --kvcompress and --kv-budget are switches (a bad value fails here)

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
