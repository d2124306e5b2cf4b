#pragma once
// A llama-family decoder's weights as float matrices that offline transforms
// edit (rotations, AWQ's scales) before `quantize_model` writes them in the
// file's formats again. Row-major, in GGUF's shapes: a matrix of ne = {cols,
// rows} maps `cols` inputs to `rows` outputs, row r being output r's weights.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/config.h"

namespace kestrel {

class ThreadPool;

struct FloatTensor {
  std::string name;         // the GGUF tensor name
  std::string replaces;     // the file tensor this one takes the place of, if renamed (else empty)
  std::vector<int64_t> ne;  // ggml order: ne[0] = cols
  std::vector<float> data;  // empty: not loaded (an absent bias, a tied output)
  int64_t cols() const { return ne.empty() ? 0 : ne[0]; }
  int64_t rows() const { return cols() == 0 ? 0 : static_cast<int64_t>(data.size()) / cols(); }
  float* row(int64_t r) { return data.data() + r * cols(); }
  const float* row(int64_t r) const { return data.data() + r * cols(); }
  bool empty() const { return data.empty(); }
};

struct FloatLayer {
  FloatTensor attn_norm;               // [n_embd]
  FloatTensor q, k, v, o;              // [n_embd -> q_dim], [n_embd -> kv_dim] x2, [q_dim -> n_embd]
  FloatTensor q_bias, k_bias, v_bias;  // qwen2 only
  FloatTensor ffn_norm;                // [n_embd]
  FloatTensor gate, up, down;          // [n_embd -> n_ff] x2, [n_ff -> n_embd]
};

struct FloatDecoder {
  ModelConfig config;
  FloatTensor token_embd;   // [n_embd] per token (row = token); loaded only with the vocabulary
  FloatTensor output_norm;  // [n_embd]
  FloatTensor output;       // [n_embd -> n_vocab]; empty when tied to token_embd and not untied
  std::vector<FloatLayer> layers;
  bool tied = false;  // the file has no output.weight
};

// Reads (dequantizes) every layer tensor of a llama or qwen2 file; with
// `vocabulary`, token_embd and output too. Throws for other architectures or
// missing tensors.
FloatDecoder load_float_decoder(const gguf::File& file, const ModelConfig& config, bool vocabulary, ThreadPool& pool);

// Every loaded tensor, for QuantizeOptions::replacements.
std::vector<const FloatTensor*> decoder_tensors(const FloatDecoder& d);

// Applies fn(row) to every row of t, rows spread over the pool.
void for_each_row(FloatTensor& t, ThreadPool& pool, const std::function<void(float* row)>& fn);
// Applies fn(column) to every column of t (gathered into a contiguous vector
// of rows() values, then written back).
void for_each_column(FloatTensor& t, ThreadPool& pool, const std::function<void(float* column)>& fn);

}  // namespace kestrel
