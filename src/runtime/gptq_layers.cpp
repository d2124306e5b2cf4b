#include "runtime/gptq_layers.h"

#include <chrono>

#include "core/error.h"
#include "kernels/f32_kernels.h"
#include "kernels/quant_kernels.h"
#include "platform/thread_pool.h"

namespace kestrel {

namespace {

constexpr int64_t kScoredRows = 512;     // evenly spaced rows of a matrix the error is measured on
constexpr int64_t kScoredSamples = 256;  // evenly spaced calibration positions

// |(Ŵ - W) X|² and |W X|² over the scored rows and positions.
std::pair<double, double> output_error(const FloatTensor& w, const std::vector<float>& rounded,
                                       const std::vector<float>& x, int64_t n, ThreadPool& pool) {
  const auto& f32 = kernels::f32_kernels();
  const int64_t rows = w.rows(), cols = w.cols(), picked = std::min(rows, kScoredRows);
  const int64_t step = std::max<int64_t>(1, n / kScoredSamples);
  std::vector<double> err(static_cast<size_t>(pool.size()), 0.0), ref(err.size(), 0.0);
  pool.parallel_for(picked, [&](int64_t i0, int64_t i1, int ith) {
    std::vector<float> delta(static_cast<size_t>(cols));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i * rows / picked;
      for (int64_t j = 0; j < cols; ++j)
        delta[static_cast<size_t>(j)] = rounded[static_cast<size_t>(r * cols + j)] - w.row(r)[j];
      for (int64_t t = 0; t < n; t += step) {
        const float* xt = x.data() + t * cols;
        const double e = f32.dot(cols, delta.data(), xt), y = f32.dot(cols, w.row(r), xt);
        err[static_cast<size_t>(ith)] += e * e;
        ref[static_cast<size_t>(ith)] += y * y;
      }
    }
  });
  double e = 0.0, y = 0.0;
  for (size_t i = 0; i < err.size(); ++i) e += err[i], y += ref[i];
  return {e, y};
}

// What the format's own quantizer makes of w (plain rounding).
std::vector<float> round_plainly(const FloatTensor& w, DType type, ThreadPool& pool) {
  const auto& k = kernels::quant_kernels(type);
  const int64_t cols = w.cols();
  std::vector<float> out(w.data.size());
  pool.parallel_for(w.rows(), [&](int64_t r0, int64_t r1, int) {
    std::vector<uint8_t> q(row_bytes(type, cols));
    for (int64_t r = r0; r < r1; ++r) {
      k.quantize_weights(w.row(r), q.data(), cols);
      k.dequantize_row(q.data(), out.data() + r * cols, cols);
    }
  });
  return out;
}

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
                                        const GptqOptions& options, const GptqInputs& which, ThreadPool& pool,
                                        std::map<std::string, QuantizeOptions::Encoded>& encoded,
                                        const GptqProgressFn& progress) {
  const int64_t n = inputs.samples();
  if (n < 16) fail("gptq: ", n, " calibration positions recorded; at least 16 are needed (use a longer text)");
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
      if (!which[static_cast<size_t>(in)]) {
        if (!options.scale_search) mats.clear();
        group.diagonal = true;
      }
      if (mats.empty()) continue;
      const std::vector<float>& x = inputs.rows(l, in);
      const int64_t cols = inputs.cols(in);
      const std::vector<float> v = gptq_factor(x.data(), n, cols, group, pool);
      GptqGroupReport& g = report.groups[static_cast<size_t>(in)];
      double e_rtn = 0.0, e_gptq = 0.0, y = 0.0;
      for (FloatTensor* w : mats) {
        const DType type = type_of(*w);
        if (w->cols() != cols) fail("gptq: ", w->name, " has ", w->cols(), " columns, its input ", cols);
        const auto [er, ref] = output_error(*w, round_plainly(*w, type, pool), x, n, pool);
        const FloatTensor original = *w;
        encoded[w->name] = {type, gptq_quantize(w->data.data(), w->rows(), cols, type, v, group, pool)};
        e_gptq += output_error(original, w->data, x, n, pool).first;
        e_rtn += er;
        y += ref;
      }
      g.error_rtn = y > 0.0 ? e_rtn / y : e_rtn;
      g.error_gptq = y > 0.0 ? e_gptq / y : e_gptq;
      g.done = true;
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) progress(report);
    reports.push_back(report);
  }
  return reports;
}

}  // namespace kestrel
