#pragma once
// `kestrel quantize --gptq`: GPTQ (runtime/gptq.h) over the projections of a
// float decoder that read the inputs asked for (q/k/v and o by default), with
// the inputs AwqInputs recorded on calibration text (as the matrices see
// them: after a rotation or AWQ's scales); the other projections get the
// weighted scale search alone (GptqOptions::scale_search), or plain rounding.
// The matrices that read one input (q/k/v; gate/up) share one factor.
#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/importance_matrix.h"
#include "model/quantize.h"
#include "runtime/awq.h"
#include "runtime/gptq.h"

namespace kestrel {

struct GptqGroupReport {
  double error_rtn = 0.0;   // relative output error |ΔY|²/|Y|² of plain rounding, on the calibration inputs
  double error_gptq = 0.0;  // the same after GPTQ
  bool done = false;        // false: not asked for, or a type GPTQ does not write (rounded as usual)
};

struct GptqLayerReport {
  int layer = 0;
  std::array<GptqGroupReport, kAwqInputs> groups{};
  double seconds = 0.0;
};

using GptqProgressFn = std::function<void(const GptqLayerReport& r)>;

// Rounds the projections with GPTQ, layer by layer: the encoded bytes go to
// `encoded` (by tensor name, for QuantizeOptions::encoded), the floats in d
// become what they decode to. With `importance` (llama.cpp's imatrix), the
// matrices GPTQ leaves out take their scale search's weights from it instead
// of from `inputs` (a matrix it has no entry for is rounded plainly, as
// llama-quantize rounds it), and `which` may be empty with nothing recorded.
// Throws when GPTQ has fewer than 16 recorded positions to work from.
using GptqInputs = std::array<bool, kAwqInputs>;  // which inputs' matrices GPTQ rounds (by AwqInput)
inline constexpr GptqInputs kAllGptqInputs{true, true, true, true};
// The default: q/k/v and o. GPTQ on the MLP's inputs raised the KLD on WikiText
// on SmolLM2 and Qwen2.5-Coder-1.5B (docs/benchmarks.md, session 29).
inline constexpr GptqInputs kAttentionGptqInputs{true, true, false, false};
GptqInputs parse_gptq_inputs(const std::string& list);  // "qkv,o,gate/up,down" (or "all"); throws naming a bad one

std::vector<GptqLayerReport> apply_gptq(FloatDecoder& d, const AwqInputs& inputs, const AwqTypeFn& type_of,
                                        const GptqOptions& options, const GptqInputs& which,
                                        const ImportanceMatrix* importance, ThreadPool& pool,
                                        std::map<std::string, QuantizeOptions::Encoded>& encoded,
                                        const GptqProgressFn& progress = {});

}  // namespace kestrel
