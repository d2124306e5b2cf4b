#include "runtime/aware_quantize.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "model/flat_transform.h"
#include "model/flatquant_fold.h"
#include "model/importance_matrix.h"
#include "model/weight_rotation.h"
#include "platform/thread_pool.h"
#include "runtime/cq_calibration.h"
#include "runtime/session.h"

namespace kestrel {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

void quantize_flatquant(const std::string& in_path, const std::string& out_path, const std::string& transforms_path,
                        const QuantizeOptions& options, const AwareProgressFn& progress) {
  const auto say = [&](const std::string& line) {
    if (progress) progress(line);
  };
  auto model = load_model(in_path);
  const ModelConfig& c = model->config();
  if (c.arch != "llama" && c.arch != "qwen2")
    fail("quantize: --flatquant supports llama and qwen2 models; this one is '", c.arch, "'");
  if (model->file().get_u64(kFlatQuantKey)) fail("quantize: ", in_path, " already has FlatQuant transforms folded in");
  ThreadPool pool(options.n_threads);
  FloatDecoder d = load_float_decoder(model->file(), c, false, pool);
  const gguf::File transforms = gguf::File::open(transforms_path);
  const FlatQuantFold fold = fold_flatquant(d, transforms, options.type, pool);
  const std::string name = std::filesystem::path(in_path).filename().string();
  if (fold.trained_for != name)
    say("note: the transforms were trained on " + fold.trained_for + ", this file is " + name + " (same shape)");
  say("flatquant: folded " + std::to_string(c.n_layer) + " layers x " + std::to_string(kFlatSites) + " transforms (" +
      fold.note + ")");
  QuantizeOptions q = options;
  q.replacements = decoder_tensors(d);
  for (const FloatTensor& t : fold.transforms) q.replacements.push_back(&t);
  q.metadata = [](gguf::Writer& w) { w.set_u32(kFlatQuantKey, 1); };
  model.reset();
  quantize_model(in_path, out_path, q);
}

AwareQuantizeReport quantize_aware(const std::string& in_path, const std::string& out_path,
                                   const AwareQuantizeOptions& o, const AwareProgressFn& progress) {
  const auto say = [&](const std::string& line) {
    if (progress) progress(line);
  };
  const bool weighted = !o.imatrix.empty();
  if (!o.rotate && !o.rotate_down && !o.awq && !o.gptq && !weighted)
    fail("quantize: neither a rotation, AWQ, GPTQ nor an importance matrix asked for");
  std::optional<ImportanceMatrix> importance;
  if (weighted) {
    if (o.rotate || o.rotate_down || o.awq)
      fail("quantize: --imatrix holds the statistics of the file's own inputs; --rotate and --awq change them");
    if (o.quantize.type != DType::Q4_0 && o.quantize.type != DType::Q5_0)
      fail("quantize: --imatrix with --gptq weighs the scale search of Q4_0 and Q5_0, not ",
           dtype_name(o.quantize.type), " (without --gptq, --imatrix writes it as llama-quantize does)");
    if (o.gptq && !o.gptq_options.scale_search)
      fail("quantize: --gptq-max-scales searches no scales, so it reads no --imatrix");
    if (o.gptq && o.gptq_inputs == kAllGptqInputs)
      fail("quantize: --imatrix weighs the matrices GPTQ leaves out, and --gptq-inputs all leaves none");
    importance = read_importance_matrix(o.imatrix);
  }
  if (o.gptq && !gptq_supports(o.quantize.type))
    fail("quantize: --gptq writes Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, not ", dtype_name(o.quantize.type));
  if (o.calibration_tokens < 64) fail("quantize: --calibration-tokens must be at least 64, got ", o.calibration_tokens);
  if (o.awq_samples < 16) fail("quantize: AWQ needs at least 16 sample positions, got ", o.awq_samples);
  AwareQuantizeReport report;
  const auto t0 = std::chrono::steady_clock::now();
  auto model = load_model(in_path);
  const ModelConfig& c = model->config();
  if (c.arch != "llama" && c.arch != "qwen2")
    fail("quantize: --rotate, --awq, --gptq and --imatrix support llama and qwen2 models; this one is '", c.arch, "'");
  if (o.rotate && (c.head_dim <= 0 || c.n_head * c.head_dim <= 0)) fail("quantize: the model's head size is unknown");

  // 1. Calibration: the inputs of every projection on the text.
  const int64_t stride = std::max<int64_t>(1, o.calibration_tokens / o.awq_samples);
  const bool record = o.awq || o.gptq;
  AwqInputs inputs(c, record ? o.awq_samples : 1, stride);  // --imatrix alone records nothing
  if (record || !o.save_calibration_text.empty()) {
    SessionOptions so;
    so.n_ctx = o.calibration_tokens;
    so.engine.n_threads = o.quantize.n_threads;
    Session session(*model, so);
    if (record) session.set_projection_observer(&inputs);
    std::vector<int32_t> tokens;
    if (o.calibration_text.empty()) {
      say("generating " + std::to_string(o.calibration_tokens) + " tokens of calibration text with the model (seed " +
          std::to_string(o.seed) + ")");
      tokens = generate_calibration_text(session, o.calibration_tokens, o.seed,
                                         [&](const std::string& l) { say("  " + l); });
    } else {
      evaluate_calibration_text(session, o.calibration_text, o.calibration_tokens);
      tokens = session.history();
    }
    session.set_projection_observer(nullptr);
    report.calibration_positions = static_cast<int64_t>(tokens.size());
    if (!o.save_calibration_text.empty()) {
      std::ofstream f(o.save_calibration_text, std::ios::binary);
      const std::string text = model->tokenizer().decode(tokens);
      f.write(text.data(), static_cast<std::streamsize>(text.size()));
      if (!f) fail("quantize: cannot write ", o.save_calibration_text);
      say("wrote the calibration text to " + o.save_calibration_text);
    }
  }
  report.awq_samples = inputs.samples();
  if (record && report.awq_samples < 16)
    fail("quantize: the calibration text gave ", report.calibration_positions, " positions, ", report.awq_samples,
         " AWQ samples; at least 16 are needed (a longer text, or fewer --awq-samples)");
  report.calibration_seconds = seconds_since(t0);
  if (record)
    say("calibration: " + std::to_string(report.calibration_positions) + " positions, " +
        std::to_string(report.awq_samples) + " recorded per projection input, " + fixed(report.calibration_seconds, 1) +
        " s");

  // 2. Transforms on float weights.
  const auto t1 = std::chrono::steady_clock::now();
  ThreadPool pool(o.quantize.n_threads);
  FloatDecoder d = load_float_decoder(model->file(), c, o.rotate, pool);
  if (o.rotate) {
    const DecoderRotation rotation = rotate_decoder(d, o.rotation_seed, pool);
    if (record) inputs.rotate(rotation);
    say("rotated: residual stream by a " + std::to_string(rotation.residual().size()) + "-point transform (Hadamard " +
        std::to_string(rotation.residual().power_of_two()) + " x orthogonal " +
        std::to_string(rotation.residual().odd_factor()) + "), values by " + std::to_string(rotation.head().size()) +
        "; norms folded" + (model->file().find_tensor("output.weight") ? "" : "; output head untied"));
  }
  int down_block = 0;
  if (o.rotate_down) {
    down_block = rotate_down_input(d, pool);
    if (record) inputs.rotate_down(down_block);
    say("rotated: ffn_down's input by Hadamard chunks of " + std::to_string(down_block) +
        " at run time (a file for kestrel only: ffn_down renamed ffn_down_hadamard)");
  }
  QuantizeOptions types = o.quantize;
  types.n_layer = c.n_layer;
  types.activation_aware = o.awq || o.gptq || weighted;
  // A renamed tensor (ffn_down_hadamard) is written in the type of the one it replaces.
  const AwqTypeFn type_of = [&](const FloatTensor& t) {
    return quantized_type(t.replaces.empty() ? t.name : t.replaces, t.ne, false, types);
  };
  if (o.awq) {
    AwqOptions awq_options = o.awq_options;
    if (o.gptq) awq_options.unclipped = o.gptq_inputs;  // GPTQ sets those blocks' grids itself
    report.awq = apply_awq(d, inputs, type_of, awq_options, pool, [&](const AwqLayerReport& r) {
      std::string line = "awq layer " + std::to_string(r.layer + 1) + "/" + std::to_string(c.n_layer) + ":";
      for (int i = 0; i < kAwqInputs; ++i) {
        const AwqGroupReport& g = r.groups[static_cast<size_t>(i)];
        line += " " + std::string(awq_input_name(AwqInput(i))) + " a=" + fixed(g.alpha, 2) + " err " +
                fixed(g.error_plain * 1e3, 3) + "->" + fixed(g.error_awq * 1e3, 3);
      }
      say(line + " (x1e-3, " + fixed(r.seconds, 1) + " s)");
    });
  }
  if (importance) {
    int64_t found = 0, matrices = 0;
    for (FloatLayer& L : d.layers)
      for (int i = 0; i < kAwqInputs; ++i)
        for (const FloatTensor* w : matrices_reading(L, AwqInput(i))) {
          ++matrices;
          found += importance->find(w->name, w->cols()) != nullptr;
        }
    if (found == 0) fail("quantize: ", o.imatrix, " has no entry for any matrix of this model (another model's?)");
    std::string from = importance->datasets.empty() ? "" : " (" + importance->datasets.front();
    if (!from.empty()) from += importance->chunks > 0 ? ", " + std::to_string(importance->chunks) + " chunks)" : ")";
    say("imatrix: " + std::to_string(found) + " of " + std::to_string(matrices) + " matrices weighted from " +
        o.imatrix + from);
  }
  QuantizeOptions q = types;
  if (o.gptq || importance)
    report.gptq = apply_gptq(d, inputs, type_of, o.gptq_options, o.gptq ? o.gptq_inputs : GptqInputs{},
                             importance ? &*importance : nullptr, pool, q.encoded, [&](const GptqLayerReport& r) {
                               std::string line = std::string(o.gptq ? "gptq" : "imatrix") + " layer " +
                                                  std::to_string(r.layer + 1) + "/" + std::to_string(c.n_layer) + ":";
                               for (int i = 0; i < kAwqInputs; ++i) {
                                 const GptqGroupReport& g = r.groups[static_cast<size_t>(i)];
                                 if (g.done)
                                   line += " " + std::string(awq_input_name(AwqInput(i))) + " " +
                                           fixed(g.error_rtn * 1e3, 3) + "->" + fixed(g.error_gptq * 1e3, 3);
                               }
                               say(line + (o.gptq ? " (output error x1e-3, plain rounding -> GPTQ; " : " rounded (") +
                                   fixed(r.seconds, 1) + " s)");
                             });
  report.transform_seconds = seconds_since(t1);

  // 3. Write.
  const auto t2 = std::chrono::steady_clock::now();
  q.replacements = decoder_tensors(d);
  if (down_block > 0) q.metadata = [down_block](gguf::Writer& w) { w.set_u32(kDownHadamardKey, down_block); };
  model.reset();  // quantize_model maps the file again; the float copy is what it reads for the replaced tensors
  quantize_model(in_path, out_path, q);
  report.write_seconds = seconds_since(t2);
  return report;
}

}  // namespace kestrel
