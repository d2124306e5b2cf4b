#include "model/float_decoder.h"

#include <functional>

#include "core/error.h"
#include "kernels/quant_kernels.h"
#include "model/weight_rotation.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

FloatTensor read_tensor(const gguf::File& file, const std::string& name, bool required, ThreadPool& pool) {
  FloatTensor t;
  t.name = name;
  const gguf::TensorInfo* info = file.find_tensor(name);
  if (!info) {
    if (required) fail("float weights: the file has no tensor '", name, "'");
    return t;
  }
  if (!kernels::has_quant_kernels(info->type))
    fail("float weights: tensor '", name, "' has type ", dtype_name(info->type), ", which kestrel cannot read");
  t.ne = info->ne;
  const int64_t cols = info->ne[0], rows = info->n_elements() / cols;
  t.data.resize(static_cast<size_t>(info->n_elements()));
  const auto& k = kernels::quant_kernels(info->type);
  const size_t stride = row_bytes(info->type, cols);
  pool.parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) k.dequantize_row(info->data + r * stride, t.row(r), cols);
  });
  return t;
}

}  // namespace

FloatDecoder load_float_decoder(const gguf::File& file, const ModelConfig& config, bool vocabulary, ThreadPool& pool) {
  if (config.arch != "llama" && config.arch != "qwen2")
    fail("float weights: architecture '", config.arch, "' is not supported (llama and qwen2 are)");
  if (file.has(kDownHadamardKey))
    fail("float weights: the file already rotates ffn_down's input at run time (kestrel quantize --rotate-down); "
         "transform the file it was made from");
  FloatDecoder d;
  d.config = config;
  d.tied = file.find_tensor("output.weight") == nullptr;
  d.output_norm = read_tensor(file, "output_norm.weight", true, pool);
  if (vocabulary) {
    d.token_embd = read_tensor(file, "token_embd.weight", true, pool);
    if (!d.tied) d.output = read_tensor(file, "output.weight", true, pool);
  }
  for (int l = 0; l < config.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    FloatLayer L;
    L.attn_norm = read_tensor(file, p + "attn_norm.weight", true, pool);
    L.q = read_tensor(file, p + "attn_q.weight", true, pool);
    L.k = read_tensor(file, p + "attn_k.weight", true, pool);
    L.v = read_tensor(file, p + "attn_v.weight", true, pool);
    L.o = read_tensor(file, p + "attn_output.weight", true, pool);
    L.q_bias = read_tensor(file, p + "attn_q.bias", false, pool);
    L.k_bias = read_tensor(file, p + "attn_k.bias", false, pool);
    L.v_bias = read_tensor(file, p + "attn_v.bias", false, pool);
    L.ffn_norm = read_tensor(file, p + "ffn_norm.weight", true, pool);
    L.gate = read_tensor(file, p + "ffn_gate.weight", true, pool);
    L.up = read_tensor(file, p + "ffn_up.weight", true, pool);
    L.down = read_tensor(file, p + "ffn_down.weight", true, pool);
    const int64_t E = config.n_embd, q_dim = int64_t{config.n_head} * config.head_dim,
                  kv_dim = int64_t{config.n_kv_head} * config.head_dim, F = config.n_ff;
    const auto expect = [&](const FloatTensor& t, int64_t cols, int64_t rows) {
      if (t.cols() != cols || t.rows() != rows)
        fail("float weights: '", t.name, "' has shape ", gguf::shape_text(t.ne), ", expected [", cols, ", ", rows, "]");
    };
    expect(L.q, E, q_dim);
    expect(L.k, E, kv_dim);
    expect(L.v, E, kv_dim);
    expect(L.o, q_dim, E);
    expect(L.gate, E, F);
    expect(L.up, E, F);
    expect(L.down, F, E);
    if (L.attn_norm.data.size() != static_cast<size_t>(E) || L.ffn_norm.data.size() != static_cast<size_t>(E))
      fail("float weights: layer ", l, "'s norms do not have ", E, " values");
    if (!L.v_bias.empty() && L.v_bias.data.size() != static_cast<size_t>(kv_dim))
      fail("float weights: '", L.v_bias.name, "' does not have ", kv_dim, " values");
    d.layers.push_back(std::move(L));
  }
  return d;
}

std::vector<const FloatTensor*> decoder_tensors(const FloatDecoder& d) {
  std::vector<const FloatTensor*> out;
  const auto add = [&](const FloatTensor& t) {
    if (!t.empty()) out.push_back(&t);
  };
  add(d.token_embd);
  add(d.output_norm);
  add(d.output);
  for (const FloatLayer& L : d.layers)
    for (const FloatTensor* t :
         {&L.attn_norm, &L.q, &L.k, &L.v, &L.o, &L.q_bias, &L.k_bias, &L.v_bias, &L.ffn_norm, &L.gate, &L.up, &L.down})
      add(*t);
  return out;
}

void for_each_row(FloatTensor& t, ThreadPool& pool, const std::function<void(float* row)>& fn) {
  pool.parallel_for(t.rows(), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) fn(t.row(r));
  });
}

void for_each_column(FloatTensor& t, ThreadPool& pool, const std::function<void(float* column)>& fn) {
  const int64_t rows = t.rows(), cols = t.cols();
  pool.parallel_for(cols, [&](int64_t c0, int64_t c1, int) {
    std::vector<float> column(static_cast<size_t>(rows));
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t r = 0; r < rows; ++r) column[static_cast<size_t>(r)] = t.data[static_cast<size_t>(r * cols + c)];
      fn(column.data());
      for (int64_t r = 0; r < rows; ++r) t.data[static_cast<size_t>(r * cols + c)] = column[static_cast<size_t>(r)];
    }
  });
}

}  // namespace kestrel
