#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/hadamard.h"
#include "kernels/quant_kernels.h"
#include "kv/attention_batch.h"
#include "model/batch_check.h"
#include "model/flat_transform.h"
#include "model/projector.h"
#include "model/tensor_binding.h"
#include "model/weight_rotation.h"
#include "ops/activation.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/norm.h"

namespace kestrel {

LlamaModel::LlamaModel(std::shared_ptr<const gguf::File> file, const std::string& arch, const LoadOptions& options) {
  file_ = std::move(file);
  const gguf::File& f = *file_;
  const bool qwen2 = arch == "qwen2";
  config_ = read_llama_config(f, arch, qwen2 ? RopeLayout::Neox : RopeLayout::Norm);
  auto& c = config_;

  TokenEmbeddings embd = bind_token_embeddings(f, c.n_embd);  // tied in SmolLM2
  c.n_vocab = embd.n_vocab;
  token_embd_ = embd.token_embd;
  output_ = embd.output;
  output_norm_ = bind_vector(f, "output_norm.weight", c.n_embd);

  if (const gguf::TensorInfo* rf = f.find_tensor("rope_freqs.weight")) {
    c.rope.freq_factors = bind_vector(f, "rope_freqs.weight", c.rope.n_rot / 2);
    (void)rf;
  }

  const int q_dim = c.n_head * c.head_dim;
  const int kv_dim = c.n_kv_head * c.head_dim;
  if (const auto block = f.get_u64(kDownHadamardKey)) {
    if (*block != static_cast<uint64_t>(down_hadamard_block(c.n_ff)))
      fail(kDownHadamardKey, " = ", *block, ", but a model of n_ff ", c.n_ff, " rotates chunks of ",
           down_hadamard_block(c.n_ff));
    down_hadamard_ = static_cast<int>(*block);
  }
  flat_ = f.get_u64(kFlatQuantKey).value_or(0) != 0;
  if (flat_ && down_hadamard_) fail("a file with both ", kFlatQuantKey, " and ", kDownHadamardKey);
  const char* down_base = down_hadamard_ ? "ffn_down_hadamard" : "ffn_down";
  // FlatQuant files rename every matrix that reads a transformed input
  // (never a --rotate-down file: refused above).
  const auto matrix = [&](int l, const std::string& base) {
    return flat_ ? flat_matrix_name(l, base) : "blk." + std::to_string(l) + "." + base + ".weight";
  };
  layers_.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    L.attn_norm = bind_vector(f, p + "attn_norm.weight", c.n_embd);
    L.wq = bind_matrix(f, matrix(l, "attn_q"), c.n_embd, q_dim);
    L.wk = bind_matrix(f, matrix(l, "attn_k"), c.n_embd, kv_dim);
    L.wv = bind_matrix(f, matrix(l, "attn_v"), c.n_embd, kv_dim);
    L.wo = bind_matrix(f, matrix(l, "attn_output"), q_dim, c.n_embd);
    L.bq = bind_vector(f, p + "attn_q.bias", q_dim, qwen2);
    L.bk = bind_vector(f, p + "attn_k.bias", kv_dim, qwen2);
    L.bv = bind_vector(f, p + "attn_v.bias", kv_dim, qwen2);
    L.ffn_norm = bind_vector(f, p + "ffn_norm.weight", c.n_embd);
    L.w_gate = bind_matrix(f, matrix(l, "ffn_gate"), c.n_embd, c.n_ff);
    L.w_up = bind_matrix(f, matrix(l, "ffn_up"), c.n_embd, c.n_ff);
    L.w_down = bind_matrix(f, matrix(l, down_base), c.n_ff, c.n_embd);
    if (flat_) {
      const int64_t widths[kFlatSites] = {c.n_embd, q_dim, c.n_embd, c.n_ff};
      for (int s = 0; s < kFlatSites; ++s) L.flat[s] = read_flat_transform(f, l, static_cast<FlatSite>(s), widths[s]);
    }
  }
  finish_loading(vocab_spec_from_gguf(f));
  (void)options;
}

void LlamaModel::prepare(ForwardContext& ctx) const {
  const MatmulContext mm{ctx.pool, ctx.scratch.workspace, ctx.isa, ctx.matmul};
  for (const Layer& L : layers_)
    for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
      // Before the panels, which drop the mapped GGUF rows the copy is made from.
      if (ctx.sparsity) prepare_columns(mm, *w);
      prepare_weight(mm, *w);
    }
  prepare_weight(mm, vocabulary_projection(output_, ctx));
}

void LlamaModel::rope_table(const Batch& b, ForwardScratch& S, ThreadPool& pool) const {
  const int half_rot = config_.rope.n_rot / 2;
  const int64_t T = b.size();
  S.rope_cos.resize(T * half_rot);
  S.rope_sin.resize(T * half_rot);
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t)
      rope_angles(config_.rope, b.pos[t], &S.rope_cos[t * half_rot], &S.rope_sin[t * half_rot]);
  });
}

void LlamaModel::attention_block(int l, const Batch& b, const float* normed, KvCache& cache, float* out,
                                 ForwardContext& ctx) const {
  const auto& c = config_;
  const Layer& L = layers_[l];
  const int64_t T = b.size();
  const int64_t hd = c.head_dim, q_dim = int64_t{c.n_head} * hd, kv_dim = int64_t{c.n_kv_head} * hd;
  const int half_rot = c.rope.n_rot / 2;
  ForwardScratch& S = ctx.scratch;
  S.q.resize(T * q_dim);
  S.k.resize(T * kv_dim);
  S.v.resize(T * kv_dim);
  S.att.resize(T * q_dim);
  Projector project(ctx, b);
  const Projector::Out qkv[] = {{Projection::Q, &L.wq, L.bq.empty() ? nullptr : L.bq.data(), S.q.data()},
                                {Projection::K, &L.wk, L.bk.empty() ? nullptr : L.bk.data(), S.k.data()},
                                {Projection::V, &L.wv, L.bv.empty() ? nullptr : L.bv.data(), S.v.data()}};
  project.shared(l, qkv, flat_input(l, FlatSite::AttnIn, normed, T, S.flat, ctx));
  for (int64_t t = 0; t < T; ++t) {
    const float* cs = &S.rope_cos[t * half_rot];
    const float* sn = &S.rope_sin[t * half_rot];
    rope_apply(c.rope, cs, sn, &S.q[t * q_dim], c.n_head, hd);
    rope_apply(c.rope, cs, sn, &S.k[t * kv_dim], c.n_kv_head, hd);
    cache.store(l, b.seq[t], b.pos[t], &S.k[t * kv_dim], &S.v[t * kv_dim]);
  }
  const AttentionParams ap{c.n_head, c.n_kv_head, c.head_dim, 1.0f / std::sqrt(static_cast<float>(hd))};
  attend_batch(cache, l, ap, AttentionBatch{T, b.seq.data(), b.pos.data(), S.q.data(), S.att.data()}, ctx.pool,
               ctx.attention, ctx.observer);
  project(l, Projection::O, L.wo, nullptr, flat_input(l, FlatSite::AttnOut, S.att.data(), T, S.flat, ctx), out);
}

void LlamaModel::mlp_block(int l, const Batch& b, const float* normed, float* out, ForwardContext& ctx) const {
  const Layer& L = layers_[l];
  const int64_t T = b.size(), ff = config_.n_ff;
  ForwardScratch& S = ctx.scratch;
  S.gate.resize(T * ff);
  S.up.resize(T * ff);
  Projector project(ctx, b);
  const Projector::Out gate_up[] = {{Projection::Gate, &L.w_gate, nullptr, S.gate.data()},
                                    {Projection::Up, &L.w_up, nullptr, S.up.data()}};
  project.shared(l, gate_up, flat_input(l, FlatSite::FfnIn, normed, T, S.flat, ctx));
  ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    swiglu_inplace(&S.gate[t0 * ff], &S.up[t0 * ff], (t1 - t0) * ff, ctx.isa);
    if (down_hadamard_)
      for (int64_t t = t0; t < t1; ++t) kernels::hadamard_chunks(&S.gate[t * ff], static_cast<int>(ff), down_hadamard_);
  });
  project(l, Projection::Down, L.w_down, nullptr, flat_input(l, FlatSite::FfnDown, S.gate.data(), T, S.up, ctx), out);
}

const float* LlamaModel::flat_input(int l, FlatSite site, const float* x, int64_t T, std::vector<float>& to,
                                    const ForwardContext& ctx) const {
  ThreadPool& pool = ctx.pool;
  const int activation_bits = ctx.matmul.activation_bits;
  const FlatTransform& t = layers_[l].flat[static_cast<int>(site)];
  if (t.empty()) return x;
  const int64_t n = t.size();
  to.resize(T * n);
  const bool clip = activation_bits == 4;  // the clipping ratios were trained for act=a4
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    t.apply(x + t0 * n, to.data() + t0 * n, t1 - t0, ctx.isa);
    if (clip) t.clip_activations(to.data() + t0 * n, t1 - t0);
  });
  return to.data();
}

void LlamaModel::run_block(Block block, int layer, const Batch& b, const float* normed, KvCache& cache, float* out,
                           ForwardContext& ctx) const {
  check_forward_batch(config_, b, cache, ctx);
  if (layer < 0 || layer >= config_.n_layer) fail("run_block: layer ", layer, " of ", config_.n_layer);
  if (block == Block::Mlp) return mlp_block(layer, b, normed, out, ctx);
  rope_table(b, ctx.scratch, ctx.pool);
  attention_block(layer, b, normed, cache, out, ctx);
}

void LlamaModel::forward(const Batch& b, KvCache& cache, float* logits, ForwardContext& ctx) const {
  check_forward_batch(config_, b, cache, ctx);
  const auto& c = config_;
  const int64_t T = b.size();
  if (T == 0) return;
  const int64_t E = c.n_embd;

  ForwardScratch& S = ctx.scratch;
  auto& x_ = S.x;
  auto& xb_ = S.xb;
  auto& out_rows_ = S.out_rows;
  x_.resize(T * E);   // [T, n_embd] residual stream
  xb_.resize(T * E);  // [T, n_embd] normed input
  std::vector<float>& block_out = S.block_out;
  block_out.resize(T * E);  // [T, n_embd] a block's output

  const auto& embd_kern = kernels::quant_kernels(token_embd_.type, ctx.isa);
  ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) embed_row(token_embd_, b.tokens[t], embd_kern, &x_[t * E]);
  });
  rope_table(b, S, ctx.pool);

  for (int l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[l];
    tap_layer(ctx.hidden_tap, l, b, x_.data(), E);
    for (int64_t t = 0; t < T; ++t) rms_norm_row(&x_[t * E], L.attn_norm.data(), c.rms_eps, E, &xb_[t * E]);
    attention_block(l, b, xb_.data(), cache, block_out.data(), ctx);
    for (int64_t i = 0; i < T * E; ++i) x_[i] += block_out[i];

    for (int64_t t = 0; t < T; ++t) rms_norm_row(&x_[t * E], L.ffn_norm.data(), c.rms_eps, E, &xb_[t * E]);
    mlp_block(l, b, xb_.data(), block_out.data(), ctx);
    for (int64_t i = 0; i < T * E; ++i) x_[i] += block_out[i];
  }

  tap_layer(ctx.hidden_tap, c.n_layer, b, x_.data(), E);
  for (int64_t t = 0; t < T; ++t) cache.grow_seq_len(b.seq[t], int64_t{b.pos[t]} + 1);

  // Final norm and the vocabulary projection, only for rows that want logits.
  const int64_t n_out = b.n_logits();
  if (n_out == 0) return;
  out_rows_.resize(n_out * E);
  for (int64_t t = 0, o = 0; t < T; ++t) {
    if (!b.want_logits[t]) continue;
    rms_norm_row(&x_[t * E], output_norm_.data(), c.rms_eps, E, &out_rows_[o * E]);
    ++o;
  }
  const MatmulContext mm{ctx.pool, S.workspace, ctx.isa, ctx.matmul};
  matmul(mm, vocabulary_projection(output_, ctx), out_rows_.data(), n_out, logits);
}

}  // namespace kestrel
