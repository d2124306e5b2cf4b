#pragma once
// Re-quantizes a GGUF model file to another tensor format, choosing per-tensor
// types the way llama.cpp's quantize does for the llama family.
#include <functional>
#include <string>

#include "core/dtype.h"
#include "model/float_decoder.h"

namespace kestrel {

struct QuantizeOptions {
  DType type = DType::Q4_0;
  bool pure = false;  // every matrix in `type`, no special output/embedding type
  int n_threads = 0;  // 0: one per core
  // Called after each tensor: (index, count, name, chosen type).
  std::function<void(size_t, size_t, const std::string&, DType)> progress;
  // Tensors an offline transform rewrote (rotation, AWQ): written from these
  // floats instead of the file's, in the type the rules below give them. A
  // name the file lacks (an untied output head) is added.
  std::vector<const FloatTensor*> replacements;
};

// The type a tensor is written in: `type`, except vectors (F32), the
// vocabulary projection (Q6_K or Q8_0 unless `pure`), and rows a format's
// block does not divide (a 32-block fallback, else F16). `is_output`: the
// output head, or the embedding of a file with a tied head.
DType quantized_type(const std::string& name, const std::vector<int64_t>& ne, bool is_output,
                     const QuantizeOptions& options);

// Named target formats (what `kestrel quantize` accepts) and their general.file_type ids.
struct QuantTarget {
  std::string name;
  DType type;
  uint32_t file_type;
};
const std::vector<QuantTarget>& quant_targets();
const QuantTarget& find_quant_target(const std::string& name);  // throws listing the names

void quantize_model(const std::string& in_path, const std::string& out_path, const QuantizeOptions& options);

}  // namespace kestrel
