#pragma once
// Synthetic llama models: random weights in the shapes of Llama-3.2-1B/3B and
// Llama-3.1-8B (and a tiny one for tests), written as GGUF files that kestrel
// and llama.cpp both load. They exist for speed benchmarks at sizes we cannot
// download here; their text is noise, but every matmul has the real shape.
//
// The tokenizer is copied (every tokenizer.* key) from another GGUF file, so
// prompts tokenize as they would with that model; n_vocab follows it. With
// kBuiltinVocab the file gets a small byte-level BPE vocab instead (273 tokens:
// 256 bytes, 16 merges, <|endoftext|>), which needs no other file.
//
// Weights (per row, so the file does not depend on threads or chunking):
//   matrices [rows, fan_in] ~ normal(0, 1/sqrt(fan_in)): each projection keeps
//     unit-variance inputs at unit variance, so logits are O(1);
//   token_embd ~ normal(0, 1): the residual stream starts at unit RMS;
//   norm weights = 1.
// Row r of tensor `name` draws from a generator seeded by (seed, name, r), then is
// quantized with the same quantizer `kestrel quantize` uses. The file is written
// in streamed chunks (memory stays at one chunk), rows quantized in parallel.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace kestrel {

struct SynthShape {
  std::string name;  // "tiny", "1b", "3b", "8b"
  std::string like;  // the model whose shape this is
  int n_embd = 0;
  int n_layer = 0;
  int n_ff = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int64_t n_ctx_train = 0;
  float rope_freq_base = 0;
};

const std::vector<SynthShape>& synth_shapes();
const SynthShape& find_synth_shape(const std::string& name);  // throws listing the names

inline constexpr const char* kBuiltinVocab = "builtin";

struct SynthOptions {
  std::string size = "1b";
  DType type = DType::Q4_0;
  uint64_t seed = 1;
  std::string vocab_from = kBuiltinVocab;  // a GGUF file, or kBuiltinVocab
  int n_threads = 0;                       // 0 = all cores
  // Called after each written chunk: bytes of tensor data done and in total.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// One tensor of a synthetic model. stddev 0 means every element is 1 (norms).
struct SynthTensor {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> ne;  // ggml order: {cols, rows}, or {n} for vectors
  float stddev = 0;
};

// The type of output.weight, as llama-quantize picks it for the llama family:
// Q6_K (Q8_0 if n_embd is not a multiple of 256) for quantized types, except
// that Q8_0 and the float types stay as they are.
DType synth_output_type(DType type, int64_t n_embd);

// The tensors in file order: token_embd, then per layer attn_norm, attn_q,
// attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down, then
// output_norm and an untied output (as Llama 3). Matrices are `type` (output:
// synth_output_type), vectors F32. Throws if a row length does not fit the type.
std::vector<SynthTensor> synth_tensor_plan(const SynthShape& shape, int64_t n_vocab, DType type);

struct SynthResult {
  std::string name;       // general.name written
  int64_t n_vocab = 0;
  int64_t n_params = 0;   // elements over all tensors
  uint64_t file_bytes = 0;
};

// Writes the model to out_path. Throws kestrel::Error for an unknown size, a type
// with no quantizer, or a vocab file without tokenizer metadata.
SynthResult synth_model(const std::string& out_path, const SynthOptions& options);

}  // namespace kestrel
