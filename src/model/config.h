#pragma once
// Hyper-parameters of a llama-family model, read from GGUF metadata.
#include <cstdint>
#include <string>
#include <vector>

#include "ops/rope.h"

namespace kestrel {

namespace gguf {
class File;
}

struct ModelConfig {
  std::string arch;  // general.architecture: "llama", "qwen2", ...
  std::string name;  // general.name, if any
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  int n_ff = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  RopeParams rope;

  // Interleaved local/global attention (Gemma 3); defaults mean "none".
  int sliding_window = 0;           // a local layer's token at p sees [p - window + 1, p]; 0: all
  std::vector<uint8_t> swa_layers;  // per layer, 1 = local (windowed); empty: every layer global
  RopeParams rope_swa;              // RoPE of the local layers
  float attn_scale = 0.0f;          // query scale; 0: 1/sqrt(head_dim)
  float final_logit_softcap = 0.0f;  // logits = cap * tanh(logits / cap); 0: none

  bool is_swa(int layer) const {
    return !swa_layers.empty() && swa_layers[static_cast<size_t>(layer)] != 0;
  }
};

// Reads and checks the {arch}.* keys. Throws kestrel::Error naming the key.
ModelConfig read_llama_config(const gguf::File& file, const std::string& arch, RopeLayout layout);

// Gemma 3: the llama keys (NeoX RoPE), then
//   {arch}.attention.sliding_window      window of the local layers (absent or 0: none)
//   {arch}.attention.sliding_window_pattern  u32 n (every n-th layer global, the
//                                        rest local; default 6) or one bool per layer
//   {arch}.rope.freq_base_swa            local layers' RoPE base (default 10000, no scaling)
//   {arch}.final_logit_softcapping       (default none)
// The query scale is 1/sqrt(head_dim), except for the 27B (62 layers), whose
// query_pre_attn_scalar is n_embd / n_head: GGUF has no key for it.
ModelConfig read_gemma3_config(const gguf::File& file, const std::string& arch);

}  // namespace kestrel
