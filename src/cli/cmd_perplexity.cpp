// kestrel perplexity: llama-perplexity's measurement (runtime/perplexity.h),
// optionally saving a KL-divergence baseline or comparing with one.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/kl_divergence.h"
#include "runtime/perplexity.h"

namespace kestrel::cli {
namespace {

// "1.23 seconds per pass - ETA 4.56 minutes", llama-perplexity's one-time estimate.
std::string eta_line(double seconds_per_chunk, int n_chunks) {
  char buf[128];
  int total = static_cast<int>(seconds_per_chunk * n_chunks);
  std::string s;
  std::snprintf(buf, sizeof buf, "perplexity: %.2f seconds per pass - ETA ", seconds_per_chunk);
  s = buf;
  if (total >= 3600) {
    s += std::to_string(total / 3600) + " hours ";
    total %= 3600;
  }
  std::snprintf(buf, sizeof buf, "%.2f minutes", total / 60.0);
  return s + buf;
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  struct Opts {
    ModelFlags model;
    std::string file;
    int chunks = -1;
    std::string kl_base;
    std::string kl_file;
    int top_k = kLogProbTopK;
    CLI::Option* kl_opt = nullptr;
  };
  auto o = std::make_shared<Opts>();
  o->model.ctx = 512;  // llama-perplexity's default
  auto* cmd = app.add_subcommand("perplexity", "measure perplexity of a text file (like llama-perplexity)");
  add_model_flags(*cmd, o->model);
  cmd->add_option("-f,--file", o->file, "text file to measure (e.g. wikitext-2 wiki.test.raw)");
  cmd->add_option("--chunks", o->chunks, "measure only the first N chunks (default: all)");
  cmd->add_option("--kl-divergence-base", o->kl_base,
                  "without --kl-divergence: save this run's log-probs here as a baseline; "
                  "with it: the baseline to compare with");
  o->kl_opt = cmd->add_option("--kl-divergence", o->kl_file,
                              "compare with a baseline (FILE, or the --kl-divergence-base file)")
                  ->expected(0, 1);
  cmd->add_option("--kl-top-k", o->top_k, "tokens per position kept in a saved baseline")
      ->check(CLI::Range(1, 1 << 16));
  cmd->callback([o] {
    const bool compare = o->kl_opt->count() > 0;
    const std::string base_path = !o->kl_file.empty() ? o->kl_file : o->kl_base;
    if (compare && base_path.empty()) fail("perplexity: --kl-divergence needs a baseline file");
    if (!compare && o->file.empty()) fail("perplexity: give the text to measure with -f FILE");

    PerplexityOptions po;
    po.n_ctx = static_cast<int>(o->model.ctx);
    po.n_chunks = o->chunks;
    po.n_batch = o->model.batch;
    po.engine = engine_config(o->model);

    LogitsRecord base;
    if (compare) {
      base = LogitsRecord::load(base_path);
      std::cerr << "perplexity: baseline " << base_path << ": " << base.n_chunks() << " chunks of " << base.n_ctx()
                << " tokens, top-" << base.top_k() << "\n";
    }
    auto model = load_model_verbose(o->model);

    std::vector<int32_t> tokens;
    if (!compare) {
      std::cerr << "perplexity: tokenizing the input ..\n";
      tokens = tokenize_for_perplexity(model->tokenizer(), read_file(o->file));
      std::cerr << "perplexity: " << tokens.size() << " tokens\n";
    }
    if (po.n_ctx <= 0) po.n_ctx = static_cast<int>(model->config().n_ctx_train);
    const int n_ctx = compare ? base.n_ctx() : po.n_ctx;
    const size_t available = compare ? base.tokens().size() : tokens.size();
    const PerplexityPlan plan = plan_perplexity(available, n_ctx, o->chunks);
    std::cerr << "perplexity: calculating perplexity over " << plan.n_chunks << " chunks, n_ctx=" << plan.n_ctx
              << ", batch_size=" << std::min<int>(po.n_batch, plan.n_ctx) << "\n";

    // Running figures go to stdout as llama-perplexity prints them; when stdout
    // is redirected and stderr is a terminal, a progress line with ETA is kept there.
    const bool live = !isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
    auto progress = [&](const PerplexityProgress& p) {
      if (p.chunk == 1) {
        std::cerr << "perplexity: engine: " << engine_settings_text(*p.engine) << "\n";
        std::cerr << eta_line(p.seconds, p.n_chunks) << "\n";
        if (compare) std::cout << "\n" << format_kl_chunk_header();
      }
      if (compare) {
        std::cout << format_kl_chunk_line(p.chunk, *p.kl) << std::flush;
      } else {
        std::cout << format_running_ppl(p.chunk, p.ppl) << std::flush;
      }
      if (live) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "\rperplexity: chunk %d/%d, PPL %.4f, %.1f s elapsed, ETA %.1f s   ", p.chunk,
                      p.n_chunks, p.ppl, p.seconds, p.eta_seconds);
        std::cerr << buf << (p.chunk == p.n_chunks ? "\n" : "") << std::flush;
      }
    };

    if (compare) {
      const PerplexityResult r = run_kl_divergence(*model, base, po, progress);
      std::cout << "\n" << format_kl_summary(*r.kl) << std::flush;
      return;
    }
    LogitsRecord record;
    const bool save = !o->kl_base.empty();
    if (save) record = LogitsRecord(model->config().n_vocab, plan.n_ctx, o->top_k);
    const PerplexityResult r = run_perplexity(*model, tokens, po, save ? &record : nullptr, nullptr, progress);
    std::cout << "\n" << format_final_estimate(r) << std::endl;
    if (save) {
      record.save(o->kl_base);
      std::cerr << "perplexity: saved the log-probs of " << record.n_rows() << " positions (top-" << record.top_k()
                << ") to " << o->kl_base << "\n";
    }
  });
}

}  // namespace kestrel::cli
