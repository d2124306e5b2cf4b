#include "model/weight_rotation.h"

#include "core/error.h"
#include "kernels/hadamard.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

void scale_columns(FloatTensor& w, const std::vector<float>& g, ThreadPool& pool) {
  for_each_row(w, pool, [&](float* row) {
    for (size_t c = 0; c < g.size(); ++c) row[c] *= g[c];
  });
}

// Each RMSNorm's weight into the matrices reading it.
void fold_norms(FloatDecoder& d, ThreadPool& pool) {
  for (FloatLayer& L : d.layers) {
    for (FloatTensor* w : {&L.q, &L.k, &L.v}) scale_columns(*w, L.attn_norm.data, pool);
    for (FloatTensor* w : {&L.gate, &L.up}) scale_columns(*w, L.ffn_norm.data, pool);
    std::fill(L.attn_norm.data.begin(), L.attn_norm.data.end(), 1.0f);
    std::fill(L.ffn_norm.data.begin(), L.ffn_norm.data.end(), 1.0f);
  }
  if (d.output.empty()) {  // tied: the head becomes a tensor of its own
    d.output = d.token_embd;
    d.output.name = "output.weight";
  }
  scale_columns(d.output, d.output_norm.data, pool);
  std::fill(d.output_norm.data.begin(), d.output_norm.data.end(), 1.0f);
}

}  // namespace

DecoderRotation::DecoderRotation(int64_t n_embd, int64_t head_dim, uint64_t seed)
    : residual_(n_embd, seed), head_(head_dim, seed ^ 0x9e3779b97f4a7c15ull) {}

void DecoderRotation::map_normed(const std::vector<std::vector<float>>& norms, int layer, float* x) const {
  const std::vector<float>& g = norms[static_cast<size_t>(layer)];
  // A zero weight zeroes its channel; the folded matrix has a zero column there.
  for (size_t c = 0; c < g.size(); ++c) x[c] = g[c] != 0.0f ? x[c] / g[c] : 0.0f;
  residual_.apply_transposed(x);
}

void DecoderRotation::map_output_input(float* x, int64_t n) const {
  for (int64_t h = 0; h + head_.size() <= n; h += head_.size()) head_.apply(x + h);
}

DecoderRotation rotate_decoder(FloatDecoder& d, uint64_t seed, ThreadPool& pool) {
  if (d.token_embd.empty()) fail("rotation: the decoder was loaded without its vocabulary tensors");
  const ModelConfig& c = d.config;
  DecoderRotation rot(c.n_embd, c.head_dim, seed);
  for (const FloatLayer& L : d.layers) {
    rot.attn_norm_.push_back(L.attn_norm.data);
    rot.ffn_norm_.push_back(L.ffn_norm.data);
  }
  fold_norms(d, pool);
  d.tied = false;

  const OrthogonalTransform& Q = rot.residual_;
  const auto reads_stream = [&](FloatTensor& w) { for_each_row(w, pool, [&](float* r) { Q.apply_transposed(r); }); };
  const auto writes_stream = [&](FloatTensor& w) {
    for_each_column(w, pool, [&](float* col) { Q.apply_transposed(col); });
  };
  reads_stream(d.token_embd);
  reads_stream(d.output);

  const OrthogonalTransform& P = rot.head_;
  const int64_t hd = c.head_dim;
  for (FloatLayer& L : d.layers) {
    for (FloatTensor* w : {&L.q, &L.k, &L.v, &L.gate, &L.up}) reads_stream(*w);
    writes_stream(L.o);
    writes_stream(L.down);
    // Values: P on each kv head's block of rows, column by column.
    for_each_column(L.v, pool, [&](float* col) {
      for (int64_t h = 0; h < c.n_kv_head; ++h) P.apply(col + h * hd);
    });
    if (!L.v_bias.empty())
      for (int64_t h = 0; h < c.n_kv_head; ++h) P.apply(L.v_bias.data.data() + h * hd);
    // Output: W_o Pᵀ on each head's columns, i.e. P on each row's head segment.
    for_each_row(L.o, pool, [&](float* row) {
      for (int64_t h = 0; h < c.n_head; ++h) P.apply(row + h * hd);
    });
  }
  return rot;
}

int down_hadamard_block(int64_t n_ff) {
  int block = 1;
  while (n_ff % (2 * block) == 0) block *= 2;
  return block > 1 ? block : 0;
}

int rotate_down_input(FloatDecoder& d, ThreadPool& pool) {
  const int64_t ff = d.config.n_ff;
  const int block = down_hadamard_block(ff);
  if (block == 0) fail("rotation: n_ff ", ff, " is odd; the down projection's input has no Hadamard chunk");
  for (size_t l = 0; l < d.layers.size(); ++l) {
    FloatTensor& w = d.layers[l].down;
    // (W H) row = H row: H is symmetric.
    for_each_row(w, pool, [&](float* row) { kernels::hadamard_chunks(row, static_cast<int>(ff), block); });
    w.replaces = w.name;
    w.name = "blk." + std::to_string(l) + ".ffn_down_hadamard.weight";
  }
  return block;
}

}  // namespace kestrel
