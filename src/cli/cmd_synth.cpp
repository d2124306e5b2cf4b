// kestrel synth -o OUT.gguf --size 1b --type q4_0: a random-weight llama model
// in a real model's shape, for benchmarks (see model/synth.h).
#include <chrono>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "model/quantize.h"
#include "cli/common.h"
#include "model/synth.h"

namespace kestrel::cli {

void add_synth_command(CLI::App& app) {
  struct Opts {
    std::string out, size = "1b", type = "q4_0", vocab_from;
    uint64_t seed = 1;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("synth", "write a random-weight llama model in a real model's shape (benchmarks)");
  cmd->add_option("-o,--output", o->out, "destination GGUF")->required();
  cmd->add_option("--size", o->size, "tiny, 1b (Llama-3.2-1B), 3b (Llama-3.2-3B), 8b (Llama-3.1-8B)");
  cmd->add_option("--type", o->type, "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K");
  cmd->add_option("-s,--seed", o->seed, "random seed (the same seed gives the same file)");
  cmd->add_option("--vocab-from", o->vocab_from,
                  "GGUF whose tokenizer is copied, or 'builtin' (default: SmolLM2-135M from the model cache)");
  cmd->add_option("-t,--threads", o->threads, "threads (default: all cores)");
  cmd->callback([o] {
    SynthOptions s;
    s.size = o->size;
    s.type = find_quant_target(o->type).type;
    s.seed = o->seed;
    s.vocab_from = o->vocab_from.empty() ? cached_smollm2_path() : o->vocab_from;
    s.n_threads = o->threads;
    const auto t0 = std::chrono::steady_clock::now();
    const auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    int last_pct = -1;
    s.progress = [&](uint64_t done, uint64_t total) {
      const int pct = total ? static_cast<int>(100 * done / total) : 100;
      if (pct == last_pct) return;
      last_pct = pct;
      std::cerr << "\rsynth: " << std::setw(3) << pct << "%  " << (done >> 20) << " / " << (total >> 20) << " MiB  "
                << std::fixed << std::setprecision(0) << (done / 1048576.0) / std::max(seconds(), 1e-3) << " MiB/s   "
                << std::flush;
    };
    const SynthResult r = synth_model(o->out, s);
    std::cerr << "\nwrote " << o->out << ": " << r.name << ", " << r.n_params << " parameters, " << r.file_bytes
              << " bytes in " << std::setprecision(1) << seconds() << " s\n";
  });
}

}  // namespace kestrel::cli
