#pragma once
// Re-quantizes a GGUF model file to another tensor format, choosing per-tensor
// types the way llama.cpp's quantize does for the llama family.
#include <functional>
#include <string>

#include "core/dtype.h"

namespace kestrel {

struct QuantizeOptions {
  DType type = DType::Q4_0;
  bool pure = false;  // every matrix in `type`, no special output/embedding type
  // Called after each tensor: (index, count, name, chosen type).
  std::function<void(size_t, size_t, const std::string&, DType)> progress;
};

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
