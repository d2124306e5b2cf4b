#pragma once
// Hyper-parameters of a llama-family model, read from GGUF metadata.
#include <cstdint>
#include <string>

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
};

// Reads and checks the {arch}.* keys. Throws kestrel::Error naming the key.
ModelConfig read_llama_config(const gguf::File& file, const std::string& arch, RopeLayout layout);

}  // namespace kestrel
