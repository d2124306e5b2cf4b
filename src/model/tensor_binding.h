#pragma once
// Looks up GGUF tensors by name and checks their shapes, with errors that name
// the tensor, the expected and the found shape.
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "ops/weight.h"

namespace kestrel {

// A matrix [rows, cols] (ggml ne = {cols, rows}); nullopt-like empty Weight when
// optional and absent.
Weight bind_matrix(const gguf::File& f, const std::string& name, int64_t cols, int64_t rows, bool required = true);

// A vector of n values converted to float (norm weights, biases). Empty when
// optional and absent.
std::vector<float> bind_vector(const gguf::File& f, const std::string& name, int64_t n, bool required = true);

// token_embd.weight [n_vocab, n_embd] (n_vocab read from it) and output.weight,
// or the embeddings again when the output is tied (absent).
struct TokenEmbeddings {
  Weight token_embd;
  Weight output;
  int n_vocab = 0;
};
TokenEmbeddings bind_token_embeddings(const gguf::File& f, int64_t n_embd);

}  // namespace kestrel
