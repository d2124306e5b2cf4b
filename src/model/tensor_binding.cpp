#include "model/tensor_binding.h"

#include "core/error.h"
#include "kernels/quant_kernels.h"

namespace kestrel {

Weight bind_matrix(const gguf::File& f, const std::string& name, int64_t cols, int64_t rows, bool required) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) {
    if (required) fail("model: missing tensor '", name, "'");
    return {};
  }
  const bool shape_ok = (t->ne.size() == 2 && t->ne[0] == cols && t->ne[1] == rows) ||
                        (t->ne.size() == 1 && rows == 1 && t->ne[0] == cols);
  if (!shape_ok)
    fail("model: tensor '", name, "' has shape ", gguf::shape_text(t->ne), ", expected ",
         gguf::shape_text(std::vector<int64_t>{cols, rows}));
  if (!kernels::has_quant_kernels(t->type))
    fail("model: tensor '", name, "' has type ", dtype_name(t->type), ", which kestrel cannot compute with");
  Weight w;
  w.name = name;
  w.type = t->type;
  w.cols = cols;
  w.rows = rows;
  w.data = t->data;
  w.row_stride = row_bytes(t->type, cols);
  w.file = f.mapping();
  return w;
}

std::vector<float> bind_vector(const gguf::File& f, const std::string& name, int64_t n, bool required) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) {
    if (required) fail("model: missing tensor '", name, "'");
    return {};
  }
  if (t->n_elements() != n)
    fail("model: tensor '", name, "' has shape ", gguf::shape_text(t->ne), ", expected [", n, "]");
  if (!kernels::has_quant_kernels(t->type))
    fail("model: tensor '", name, "' has type ", dtype_name(t->type), ", which kestrel cannot compute with");
  std::vector<float> out(static_cast<size_t>(n));
  kernels::quant_kernels(t->type, Isa::Scalar).dequantize_row(t->data, out.data(), n);
  return out;
}

TokenEmbeddings bind_token_embeddings(const gguf::File& f, int64_t n_embd) {
  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) fail("model: missing tensor 'token_embd.weight'");
  if (embd->ne.size() != 2) fail("model: tensor 'token_embd.weight' must have 2 dimensions");
  TokenEmbeddings out;
  out.n_vocab = static_cast<int>(embd->ne[1]);
  out.token_embd = bind_matrix(f, "token_embd.weight", n_embd, out.n_vocab);
  out.output = bind_matrix(f, "output.weight", n_embd, out.n_vocab, /*required=*/false);
  if (out.output.empty()) out.output = out.token_embd;
  return out;
}

}  // namespace kestrel
