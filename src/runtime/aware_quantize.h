#pragma once
// `kestrel quantize --rotate --awq --gptq --imatrix`: quantization that knows the model's
// activations (issue 17). The source file runs on calibration text (its own
// generations, or a file that is not the evaluation text) while AwqInputs
// records the inputs of every projection; the weights are then read as
// floats, rotated (model/weight_rotation.h) and/or scaled (runtime/awq.h),
// rounded by GPTQ (runtime/gptq_layers.h) or by quantize_model in the chosen format. The result is a plain
// GGUF of the same layout and size (a tied head is untied by a rotation).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/quantize.h"
#include "runtime/awq.h"
#include "runtime/gptq_layers.h"

namespace kestrel {

struct AwareQuantizeOptions {
  QuantizeOptions quantize;  // type, pure, threads, per-tensor progress
  bool rotate = false;
  bool rotate_down = false;  // the online Hadamard before ffn_down: a file only kestrel runs
  bool awq = false;
  bool gptq =
      false;  // GPTQ's rounding after the transforms (32-element block formats; AWQ does not clip what it rounds)
  GptqOptions gptq_options;
  GptqInputs gptq_inputs = kAttentionGptqInputs;
  // llama.cpp's importance matrix (model/importance_matrix.h): Q4_0/Q5_0 block
  // scales searched with its weights, as llama-quantize --imatrix does, for
  // the matrices GPTQ does not round (all of them without --gptq).
  std::string imatrix;
  uint64_t rotation_seed = 0x5eed;
  std::string calibration_text;  // empty: the model's own generations
  int64_t calibration_tokens = 2048;
  uint64_t seed = 42;         // of the generation
  int64_t awq_samples = 256;  // positions recorded per projection input (spread over the text); AWQ scores 256
  AwqOptions awq_options;
  std::string save_calibration_text;  // write the text used here (for llama-imatrix on the same text)
};

struct AwareQuantizeReport {
  int64_t calibration_positions = 0;
  int64_t awq_samples = 0;
  std::vector<AwqLayerReport> awq;
  std::vector<GptqLayerReport> gptq;
  double calibration_seconds = 0.0, transform_seconds = 0.0, write_seconds = 0.0;
};

using AwareProgressFn = std::function<void(const std::string& line)>;

// `kestrel quantize --flatquant FILE`: the float weights with FlatQuant's
// trained transforms folded in (model/flatquant_fold.h), written by
// quantize_model in options.type (Q4_0, or a float type for checks) with the
// transforms and kFlatQuantKey, for LlamaModel to apply at run time.
void quantize_flatquant(const std::string& in_path, const std::string& out_path, const std::string& transforms_path,
                        const QuantizeOptions& options, const AwareProgressFn& progress = {});

AwareQuantizeReport quantize_aware(const std::string& in_path, const std::string& out_path,
                                   const AwareQuantizeOptions& options, const AwareProgressFn& progress = {});

}  // namespace kestrel
