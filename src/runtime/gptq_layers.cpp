#include "runtime/gptq_layers.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "kernels/quant_kernels.h"
#include "platform/thread_pool.h"

namespace kestrel {

namespace {

constexpr int64_t kScoredRows = 512;     // evenly spaced rows of a matrix the error is measured on
constexpr int64_t kScoredSamples = 256;  // evenly spaced calibration positions
// The scale search's weights (the matrices GPTQ leaves out, and an importance
// matrix's) are taken as they are, as llama-quantize takes them: GPTQ's
// damping (a share of the mean) flattened them (it moved 30 % of SmolLM2's
// attention blocks off llama-quantize's choice with the same imatrix, 9 %
// without; --gptq's KLD 0.121 -> 0.117). This share only keeps a column no
// calibration token reached from a zero weight.
constexpr double kImportanceDamp = 1e-9;

}  // namespace

GptqInputs parse_gptq_inputs(const std::string& list) {
  if (list == "all") return kAllGptqInputs;
  GptqInputs which{};
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, end - start);
    bool found = false;
    for (int i = 0; i < kAwqInputs; ++i)
      if (name == awq_input_name(AwqInput(i))) which[static_cast<size_t>(i)] = found = true;
    if (!found) fail("gptq: no input '", name, "' (qkv, o, gate/up, down or all)");
    start = end + 1;
  }
  return which;
}

std::vector<GptqLayerReport> apply_gptq(FloatDecoder& d, const AwqInputs& inputs, const AwqTypeFn& type_of,
                                        const GptqOptions& options, const GptqInputs& which,
                                        const ImportanceMatrix* importance, ThreadPool& pool,
                                        std::map<std::string, QuantizeOptions::Encoded>& encoded,
                                        const GptqProgressFn& progress) {
  const int64_t n = inputs.samples();
  const bool any_gptq = std::find(which.begin(), which.end(), true) != which.end();
  if ((any_gptq || !importance) && n < 16)
    fail("gptq: ", n, " calibration positions recorded; at least 16 are needed (use a longer text)");
  const ModelConfig& c = d.config;
  std::vector<GptqLayerReport> reports;
  for (int l = 0; l < c.n_layer; ++l) {
    const auto t0 = std::chrono::steady_clock::now();
    FloatLayer& L = d.layers[static_cast<size_t>(l)];
    GptqLayerReport report;
    report.layer = l;
    for (AwqInput in : {AwqInput::Attention, AwqInput::Output, AwqInput::Mlp, AwqInput::Down}) {
      std::vector<FloatTensor*> mats = matrices_reading(L, in);
      std::erase_if(mats, [&](const FloatTensor* w) { return !gptq_supports(type_of(*w)); });
      // The inputs not asked for: the weighted scale search alone, or plain rounding.
      GptqOptions group = options;
      const bool full = which[static_cast<size_t>(in)];
      if (!full) {
        if (!options.scale_search) mats.clear();
        group.diagonal = true;
        group.damp = kImportanceDamp;
      }
      const int64_t cols = inputs.cols(in);
      // Each matrix with the importance matrix's entry for it, if one is given
      // (else the factor comes from the recorded inputs).
      std::vector<std::pair<FloatTensor*, const std::vector<float>*>> targets;
      for (FloatTensor* w : mats) {
        const std::vector<float>* mean =
            !full && importance ? importance->find(w->replaces.empty() ? w->name : w->replaces, cols) : nullptr;
        if (!full && importance && !mean) continue;  // no entry: rounded plainly by the writer, as llama-quantize does
        targets.emplace_back(w, mean);
      }
      if (targets.empty()) continue;
      const bool scored = n >= 16;  // the report needs recorded inputs
      const std::vector<float>& x = inputs.rows(l, in);
      const std::vector<float> v =
          full || !importance ? gptq_factor(x.data(), n, cols, group, pool) : std::vector<float>{};
      GptqGroupReport& g = report.groups[static_cast<size_t>(in)];
      double e_rtn = 0.0, e_gptq = 0.0, y = 0.0;
      for (const auto& [w, mean] : targets) {
        const DType type = type_of(*w);
        if (w->cols() != cols) fail("gptq: ", w->name, " has ", w->cols(), " columns, its input ", cols);
        const auto& k = kernels::quant_kernels(type);
        const auto [er, ref] = scored ? projection_error(
                                            *w,
                                            [&](int64_t r, float* out) {  // plain rounding, the format's own quantizer
                                              thread_local std::vector<uint8_t> q;
                                              q.resize(row_bytes(type, cols));
                                              k.quantize_weights(w->row(r), q.data(), cols);
                                              k.dequantize_row(q.data(), out, cols);
                                            },
                                            x, n, kScoredRows, kScoredSamples, true, pool)
                                      : std::pair<double, double>{};
        const FloatTensor original = scored ? *w : FloatTensor{};  // for the report only
        const std::vector<float> own =
            mean ? gptq_diagonal_factor(std::vector<double>(mean->begin(), mean->end()), group.damp)
                 : std::vector<float>{};
        encoded[w->name] = {type, gptq_quantize(w->data.data(), w->rows(), cols, type, mean ? own : v, group, pool)};
        if (scored)
          e_gptq += projection_error(
                        original, [&](int64_t r, float* out) { std::copy(w->row(r), w->row(r) + cols, out); }, x, n,
                        kScoredRows, kScoredSamples, false, pool)
                        .first;
        e_rtn += er;
        y += ref;
      }
      g.error_rtn = y > 0.0 ? e_rtn / y : e_rtn;
      g.error_gptq = y > 0.0 ? e_gptq / y : e_gptq;
      g.done = scored;
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) progress(report);
    reports.push_back(report);
  }
  return reports;
}

}  // namespace kestrel
