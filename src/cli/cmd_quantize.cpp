// kestrel quantize IN.gguf OUT.gguf TYPE: re-quantize a model, like llama-quantize;
// with --rotate and/or --awq, activation-aware (runtime/aware_quantize.h).
#include <unistd.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/quantize.h"
#include "runtime/aware_quantize.h"

namespace kestrel::cli {

void add_quantize_command(CLI::App& app) {
  struct Opts {
    std::string in, out, type, text_file, save_text, flatquant, imatrix, gptq_inputs = "qkv,o";
    bool pure = false, rotate = false, rotate_down = false, awq = false, gptq = false, gptq_max_scales = false;
    double gptq_damp = GptqOptions{}.damp, gptq_sink = GptqOptions{}.sink_weight,
           gptq_diagonal_damp = GptqOptions{}.diagonal_damp;
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
  auto* gptq = cmd->add_flag(
      "--gptq", o->gptq,
      "round with GPTQ (each column's error fed to the columns after it through the inputs' second moments; "
      "TYPE Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0; combines with --rotate and --awq)");
  cmd->add_option("--gptq-damp", o->gptq_damp,
                  "GPTQ's damping, a share of the mean diagonal (default 0.01; the matrices GPTQ leaves out weigh "
                  "their scale search undamped)")
      ->needs(gptq);
  cmd->add_option("--gptq-diagonal-damp", o->gptq_diagonal_damp,
                  "each input's own second moment added this many times more to GPTQ's statistics (default 0.3; 0 is "
                  "GPTQ as published, large values the weighted scale search alone)")
      ->needs(gptq);
  cmd->add_option("--gptq-inputs", o->gptq_inputs,
                  "the inputs whose matrices GPTQ rounds: a list of qkv, o, gate/up, down, or all (default qkv,o: the "
                  "MLP inputs lost end to end)")
      ->needs(gptq);
  cmd->add_flag("--gptq-max-scales", o->gptq_max_scales,
                "take each block's scale from its largest weight (the format's rule), and round the inputs GPTQ leaves "
                "out plainly (default for Q4_0/Q5_0: the scale searched on the inputs' mean squares, as llama.cpp's "
                "imatrix does, for every matrix)")
      ->needs(gptq);
  cmd->add_option("--gptq-sink-weight", o->gptq_sink,
                  "weight of the first calibration position (the attention sink) in GPTQ's statistics (default 100)")
      ->needs(gptq);
  cmd->add_option("--imatrix", o->imatrix,
                  "llama.cpp's importance matrix (llama-imatrix's GGUF): Q4_0/Q5_0 scales searched with its weights "
                  "(with --gptq: for the matrices GPTQ leaves out); Q4_1, Q5_1, Q4_K, Q5_K, Q6_K and the K mixes "
                  "written as llama-quantize --imatrix writes them");
  cmd->add_option(
      "-f,--calibration-file", o->text_file,
      "calibration text for --awq/--rotate (default: the model's own generations; never the evaluation text)");
  cmd->add_option("--calibration-tokens", o->tokens, "positions of calibration text (default 2048)");
  cmd->add_option("--save-calibration-text", o->save_text,
                  "write the calibration text used (to give llama-imatrix the same text)");
  auto* samples = cmd->add_option("--awq-samples", o->samples,
                                  "positions recorded per projection input (default 256; with --gptq every position)");
  cmd->add_option("--awq-grid", o->grid, "values of alpha tried in [0, 1) (default 20)");
  cmd->add_option("--awq-rows", o->rows, "rows per matrix AWQ scores (default 512)");
  cmd->add_option("-s,--seed", o->seed, "seed of the calibration text's generation (default 42)");
  cmd->add_option("-t,--threads", o->threads, "threads (default: one per core)");
  cmd->callback([o, samples] {
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
      if (o->rotate || o->rotate_down || o->awq || o->gptq || !o->imatrix.empty())
        fail(
            "quantize: --flatquant learns its own transforms; it does not combine with --rotate, --awq, --gptq or "
            "--imatrix");
      if (!o->text_file.empty() || !o->save_text.empty())
        fail("quantize: --flatquant reads no calibration text (tools/flatquant/train.py did)");
      quantize_flatquant(o->in, o->out, o->flatquant, q, [](const std::string& line) { std::cerr << line << "\n"; });
      std::cerr << "\nwrote " << o->out << "\n";
      return;
    }
    const bool transformed = o->rotate || o->rotate_down || o->awq || o->gptq;
    // Q4_0 and Q5_0 take --imatrix through the weighted scale search (below);
    // every other format through llama-quantize's own weighted quantizers.
    const bool ggml_weighted = !o->imatrix.empty() && q.type != DType::Q4_0 && q.type != DType::Q5_0;
    if (!transformed && (o->imatrix.empty() || ggml_weighted)) {
      if (!o->text_file.empty() || !o->save_text.empty())
        fail(o->imatrix.empty() ? "quantize: a calibration text is only read with --awq, --gptq or --rotate"
                                : "quantize: --imatrix reads no calibration text (llama-imatrix did)");
      std::optional<ImportanceMatrix> importance;
      if (ggml_weighted) {
        importance = read_importance_matrix(o->imatrix);
        q.importance = &*importance;
        std::cerr << "imatrix: " << importance->mean_squares.size() << " matrices from " << o->imatrix
                  << (importance->datasets.empty() ? "" : " (" + importance->datasets.front() + ")") << "\n";
      }
      quantize_model(o->in, o->out, q);
      std::cerr << "\nwrote " << o->out << "\n";
      return;
    }
    AwareQuantizeOptions a;
    a.quantize = q;
    a.rotate = o->rotate;
    a.rotate_down = o->rotate_down;
    a.awq = o->awq;
    a.gptq = o->gptq;
    a.gptq_options.damp = o->gptq_damp;
    a.gptq_options.sink_weight = o->gptq_sink;
    a.gptq_options.diagonal_damp = o->gptq_diagonal_damp;
    a.gptq_options.scale_search = !o->gptq_max_scales;
    a.gptq_inputs = parse_gptq_inputs(o->gptq_inputs);
    a.imatrix = o->imatrix;
    if (!o->awq && !o->gptq && (!o->text_file.empty() || !o->save_text.empty()) && !o->rotate && !o->rotate_down)
      fail("quantize: --imatrix reads no calibration text (llama-imatrix did)");
    if (!o->text_file.empty()) {
      refuse_evaluation_text(o->text_file, "quantize");
      a.calibration_text = read_file(o->text_file);
    }
    a.calibration_tokens = o->tokens;
    a.seed = o->seed;
    a.awq_samples = o->gptq && samples->count() == 0 ? o->tokens : o->samples;
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
    const bool gptq_reported = std::any_of(r.gptq.begin(), r.gptq.end(), [](const GptqLayerReport& l) {
      return std::any_of(l.groups.begin(), l.groups.end(), [](const GptqGroupReport& g) { return g.done; });
    });
    if (gptq_reported) {
      std::cout << "GPTQ: relative output error |dY|^2/|Y|^2 (x1e-3) per input on the calibration inputs, plain "
                   "rounding -> GPTQ\n";
      for (int i = 0; i < kAwqInputs; ++i) {
        double plain = 0.0, gptq = 0.0;
        int layers = 0;
        for (const GptqLayerReport& l : r.gptq) {
          const GptqGroupReport& g = l.groups[static_cast<size_t>(i)];
          if (!g.done) continue;
          plain += g.error_rtn;
          gptq += g.error_gptq;
          ++layers;
        }
        if (layers == 0) continue;
        plain /= layers;
        gptq /= layers;
        std::cout << std::fixed << std::setprecision(3) << "  " << std::left << std::setw(8)
                  << awq_input_name(AwqInput(i)) << std::right << std::setw(9) << plain * 1e3 << " -> " << std::setw(9)
                  << gptq * 1e3 << "\n";
      }
    }
    std::cout << std::fixed << std::setprecision(1) << "wrote " << o->out << " (";
    if (r.calibration_positions > 0)
      std::cout << "calibration " << r.calibration_seconds << " s on " << r.calibration_positions << " positions, ";
    std::cout << "transforms " << r.transform_seconds << " s, writing " << r.write_seconds << " s)\n";
  });
}

}  // namespace kestrel::cli
