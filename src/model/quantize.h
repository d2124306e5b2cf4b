#pragma once
// Re-quantizes a GGUF model file to another tensor format, choosing per-tensor
// types the way llama.cpp's quantize does for the llama family.
#include <functional>
#include <map>
#include <string>

#include "core/dtype.h"
#include "gguf/gguf.h"
#include "model/float_decoder.h"
#include "model/importance_matrix.h"

namespace kestrel {

// llama.cpp's K-quant recipes: _S and _M give a few tensors more bits
// (attn_v, ffn_down), chosen by layer as llama-quantize chooses them.
enum class QuantMix : uint8_t { None, Small, Medium };

struct QuantizeOptions {
  DType type = DType::Q4_0;
  QuantMix mix = QuantMix::None;
  int n_layer = 0;    // for the mixes; quantize_model reads it from the file
  bool pure = false;  // every matrix in `type`, no special output/embedding type
  // The rounding knows the activations (AWQ, GPTQ or an importance matrix):
  // as llama-quantize does when given an imatrix, a Q4_0/Q5_0 file then
  // writes the first eighth of the layers' ffn_down in Q4_1/Q5_1 (their
  // rare large inputs are what a zero-centred grid rounds worst).
  bool activation_aware = false;
  // llama.cpp's importance matrix, when given: every matrix it has an entry
  // for, written in a format llama-quantize weighs (kernels::weighted_quantizer),
  // is quantized as llama-quantize does given that imatrix (the same bytes);
  // the rest as without it (Q8_0, F16, tensors it has no entry for). A file
  // with no entry for any such matrix of the model is an error.
  const ImportanceMatrix* importance = nullptr;
  int n_threads = 0;  // 0: one per core
  // Called after each tensor: (index, count, name, chosen type).
  std::function<void(size_t, size_t, const std::string&, DType)> progress;
  // Tensors an offline transform rewrote (rotation, AWQ): written from these
  // floats instead of the file's, in the type the rules below give them. A
  // name the file lacks (an untied output head) is added; a tensor with
  // `replaces` set takes that tensor's place (and type) under its own name.
  std::vector<const FloatTensor*> replacements;
  // Replacements an offline quantizer already encoded (GPTQ), by the name they
  // are written under: these bytes are written as they are (an error if the
  // rules below give the tensor another type).
  struct Encoded {
    DType type = DType::F32;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, Encoded> encoded;
  // Keys a transform adds to the file's metadata (an online transform the runtime must apply).
  std::function<void(gguf::Writer&)> metadata;
};

// The type a tensor is written in: `type`, except vectors (F32), the
// vocabulary projection (Q6_K or Q8_0 unless `pure`), a mix's attn_v and
// ffn_down (and an activation-aware Q4_0/Q5_0 file's first ffn_down layers),
// and rows a format's block does not divide (a 32-block fallback,
// else F16). `is_output`: the output head, or the embedding of a file with a
// tied head.
// `layer`: for a mix, the layer as llama-quantize counts it; -1, the number
// in the name, as llama.cpp does since it visits tensors by layer (older
// versions counted in name order, blk.0, blk.1, blk.10, ...: the files they
// wrote give blk.10 the third layer's type).
DType quantized_type(const std::string& name, const std::vector<int64_t>& ne, bool is_output,
                     const QuantizeOptions& options, int layer = -1);

// Named target formats (what `kestrel quantize` accepts) and their general.file_type ids.
struct QuantTarget {
  std::string name;
  DType type;
  uint32_t file_type;
  QuantMix mix = QuantMix::None;
};
const std::vector<QuantTarget>& quant_targets();
const QuantTarget& find_quant_target(const std::string& name);  // throws listing the names

void quantize_model(const std::string& in_path, const std::string& out_path, const QuantizeOptions& options);

}  // namespace kestrel
