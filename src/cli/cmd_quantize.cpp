// kestrel quantize IN.gguf OUT.gguf TYPE: re-quantize a model, like llama-quantize;
// with --rotate and/or --awq, activation-aware (runtime/aware_quantize.h).
#include <unistd.h>

#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/quantize.h"
#include "runtime/aware_quantize.h"

namespace kestrel::cli {

void add_quantize_command(CLI::App& app) {
  struct Opts {
    std::string in, out, type, text_file, save_text, flatquant;
    bool pure = false, rotate = false, rotate_down = false, awq = false;
    int threads = 0;
    int64_t tokens = 2048, samples = 256, rows = AwqOptions{}.max_rows;
    int grid = AwqOptions{}.grid;
    uint64_t seed = 42;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("quantize", "write a copy of a GGUF model in another tensor format");
  cmd->add_option("input", o->in, "source GGUF")->required();
  cmd->add_option("output", o->out, "destination GGUF")->required();
  cmd->add_option(
         "type", o->type,
         "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, and llama.cpp's mixes "
         "Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M")
      ->required();
  cmd->add_flag("--pure", o->pure, "every matrix in TYPE (no higher-precision output layer)");
  cmd->add_flag("--rotate", o->rotate,
                "fold a random orthogonal rotation into the weights (QuaRot-style; llama/qwen2; unties a tied head)");
  cmd->add_flag(
      "--rotate-down", o->rotate_down,
      "also rotate ffn_down's input by an online Hadamard transform (for act=a4; the file runs in kestrel only)");
  cmd->add_option("--flatquant", o->flatquant,
                  "fold FlatQuant's trained transforms (tools/flatquant/train.py writes FILE) into the weights; "
                  "TYPE Q4_0 (the file runs in kestrel only; use act=a4 for W4A4)");
  cmd->add_flag("--awq", o->awq, "activation-aware per-channel scales, searched on calibration text (llama/qwen2)");
  cmd->add_option(
      "-f,--calibration-file", o->text_file,
      "calibration text for --awq/--rotate (default: the model's own generations; never the evaluation text)");
  cmd->add_option("--calibration-tokens", o->tokens, "positions of calibration text (default 2048)");
  cmd->add_option("--save-calibration-text", o->save_text,
                  "write the calibration text used (to give llama-imatrix the same text)");
  cmd->add_option("--awq-samples", o->samples, "positions AWQ scores each group on (default 256)");
  cmd->add_option("--awq-grid", o->grid, "values of alpha tried in [0, 1) (default 20)");
  cmd->add_option("--awq-rows", o->rows, "rows per matrix AWQ scores (default 512)");
  cmd->add_option("-s,--seed", o->seed, "seed of the calibration text's generation (default 42)");
  cmd->add_option("-t,--threads", o->threads, "threads (default: one per core)");
  cmd->callback([o] {
    if (o->threads < 0) fail("-t must not be negative, got ", o->threads);
    QuantizeOptions q;
    const QuantTarget& target = find_quant_target(o->type);
    q.type = target.type;
    q.mix = target.mix;
    q.pure = o->pure;
    q.n_threads = o->threads;
    // On a terminal one line rewritten per tensor; in a log, a line per tenth.
    q.progress = [tty = isatty(2) != 0](size_t i, size_t n, const std::string& name, DType t) {
      if (tty)
        std::cerr << "\r[" << (i + 1) << "/" << n << "] " << name << " -> " << dtype_name(t) << "            "
                  << std::flush;
      else if ((i + 1) * 10 / n != i * 10 / n)
        std::cerr << "quantize: [" << (i + 1) << "/" << n << "] " << name << " -> " << dtype_name(t) << "\n";
    };
    if (!o->flatquant.empty()) {
      if (o->rotate || o->rotate_down || o->awq)
        fail("quantize: --flatquant learns its own transforms; it does not combine with --rotate or --awq");
      if (!o->text_file.empty() || !o->save_text.empty())
        fail("quantize: --flatquant reads no calibration text (tools/flatquant/train.py did)");
      quantize_flatquant(o->in, o->out, o->flatquant, q, [](const std::string& line) { std::cerr << line << "\n"; });
      std::cerr << "\nwrote " << o->out << "\n";
      return;
    }
    if (!o->rotate && !o->rotate_down && !o->awq) {
      if (!o->text_file.empty() || !o->save_text.empty())
        fail("quantize: a calibration text is only read with --awq or --rotate");
      quantize_model(o->in, o->out, q);
      std::cerr << "\nwrote " << o->out << "\n";
      return;
    }
    AwareQuantizeOptions a;
    a.quantize = q;
    a.rotate = o->rotate;
    a.rotate_down = o->rotate_down;
    a.awq = o->awq;
    if (!o->text_file.empty()) {
      refuse_evaluation_text(o->text_file, "quantize");
      a.calibration_text = read_file(o->text_file);
    }
    a.calibration_tokens = o->tokens;
    a.seed = o->seed;
    a.awq_samples = o->samples;
    a.awq_options.grid = o->grid;
    a.awq_options.max_rows = o->rows;
    a.save_calibration_text = o->save_text;
    const AwareQuantizeReport r =
        quantize_aware(o->in, o->out, a, [](const std::string& line) { std::cerr << "quantize: " << line << "\n"; });
    std::cerr << "\n";
    if (!r.awq.empty()) {
      std::cout
          << "AWQ: relative output error |dY|^2/|Y|^2 (x1e-3) per input, plain rounding -> scaled (before clipping); "
             "mean alpha; blocks clipped\n";
      for (int i = 0; i < kAwqInputs; ++i) {
        double plain = 0.0, awq = 0.0, alpha = 0.0, clipped = 0.0;
        for (const AwqLayerReport& l : r.awq) {
          const AwqGroupReport& g = l.groups[static_cast<size_t>(i)];
          plain += g.error_plain / r.awq.size();
          awq += g.error_awq / r.awq.size();
          alpha += g.alpha / r.awq.size();
          clipped += g.clipped / r.awq.size();
        }
        std::cout << std::fixed << std::setprecision(3) << "  " << std::left << std::setw(8)
                  << awq_input_name(AwqInput(i)) << std::right << std::setw(9) << plain * 1e3 << " -> " << std::setw(9)
                  << awq * 1e3 << "   alpha " << std::setprecision(2) << alpha << "   clipped " << std::setprecision(1)
                  << clipped * 100 << " %\n";
      }
    }
    std::cout << std::fixed << std::setprecision(1) << "wrote " << o->out << " (calibration " << r.calibration_seconds
              << " s on " << r.calibration_positions << " positions, transforms " << r.transform_seconds
              << " s, writing " << r.write_seconds << " s)\n";
  });
}

}  // namespace kestrel::cli
