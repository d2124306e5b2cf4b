#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "kv/attention_batch.h"
#include "model/tensor_binding.h"
#include "ops/activation.h"
#include "ops/matmul.h"
#include "ops/norm.h"

namespace kestrel {

LlamaModel::LlamaModel(std::shared_ptr<const gguf::File> file, const std::string& arch, const LoadOptions& options) {
  file_ = std::move(file);
  const gguf::File& f = *file_;
  const bool qwen2 = arch == "qwen2";
  config_ = read_llama_config(f, arch, qwen2 ? RopeLayout::Neox : RopeLayout::Norm);
  auto& c = config_;

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) fail("model: missing tensor 'token_embd.weight'");
  if (embd->ne.size() != 2) fail("model: tensor 'token_embd.weight' must have 2 dimensions");
  c.n_vocab = static_cast<int>(embd->ne[1]);
  token_embd_ = bind_matrix(f, "token_embd.weight", c.n_embd, c.n_vocab);
  output_norm_ = bind_vector(f, "output_norm.weight", c.n_embd);
  output_ = bind_matrix(f, "output.weight", c.n_embd, c.n_vocab, /*required=*/false);
  if (output_.empty()) output_ = token_embd_;  // tied embeddings (SmolLM2)

  if (const gguf::TensorInfo* rf = f.find_tensor("rope_freqs.weight")) {
    c.rope.freq_factors = bind_vector(f, "rope_freqs.weight", c.rope.n_rot / 2);
    (void)rf;
  }

  const int q_dim = c.n_head * c.head_dim;
  const int kv_dim = c.n_kv_head * c.head_dim;
  layers_.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    L.attn_norm = bind_vector(f, p + "attn_norm.weight", c.n_embd);
    L.wq = bind_matrix(f, p + "attn_q.weight", c.n_embd, q_dim);
    L.wk = bind_matrix(f, p + "attn_k.weight", c.n_embd, kv_dim);
    L.wv = bind_matrix(f, p + "attn_v.weight", c.n_embd, kv_dim);
    L.wo = bind_matrix(f, p + "attn_output.weight", q_dim, c.n_embd);
    L.bq = bind_vector(f, p + "attn_q.bias", q_dim, qwen2);
    L.bk = bind_vector(f, p + "attn_k.bias", kv_dim, qwen2);
    L.bv = bind_vector(f, p + "attn_v.bias", kv_dim, qwen2);
    L.ffn_norm = bind_vector(f, p + "ffn_norm.weight", c.n_embd);
    L.w_gate = bind_matrix(f, p + "ffn_gate.weight", c.n_embd, c.n_ff);
    L.w_up = bind_matrix(f, p + "ffn_up.weight", c.n_embd, c.n_ff);
    L.w_down = bind_matrix(f, p + "ffn_down.weight", c.n_ff, c.n_embd);
  }
  for (const auto& t : f.tensors()) weight_bytes_ += t.nbytes;
  tokenizer_ = std::make_unique<Tokenizer>(vocab_spec_from_gguf(f));
  if (tokenizer_->n_vocab() != c.n_vocab)
    fail("model: tokenizer has ", tokenizer_->n_vocab(), " tokens but token_embd.weight has ", c.n_vocab,
         " rows");
  (void)options;
}

void LlamaModel::check_batch(const Batch& b, const KvCache& cache, const ForwardContext& ctx) const {
  const auto& s = cache.shape();
  if (ctx.attention.k_type != cache.k_type() || ctx.attention.v_type != cache.v_type())
    fail("model: attention kernels for K ", dtype_name(ctx.attention.k_type), " and V ",
         dtype_name(ctx.attention.v_type), " given a cache of K ", dtype_name(cache.k_type()), " and V ",
         dtype_name(cache.v_type()));
  if (s.n_layer != config_.n_layer || s.n_kv_head != config_.n_kv_head || s.head_dim != config_.head_dim)
    fail("model: kv cache shape does not match the model");
  if (b.pos.size() != b.tokens.size() || b.seq.size() != b.tokens.size() || b.want_logits.size() != b.tokens.size())
    fail("model: batch arrays have different lengths");
  for (int64_t i = 0; i < b.size(); ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= config_.n_vocab)
      fail("model: token id ", b.tokens[i], " is outside the vocabulary (", config_.n_vocab, " tokens)");
    if (b.pos[i] < 0 || b.pos[i] >= s.n_ctx)
      fail("context overflow: position ", b.pos[i], " does not fit the context of ", s.n_ctx, " tokens");
    if (b.seq[i] < 0 || b.seq[i] >= s.n_seq) fail("model: sequence id ", b.seq[i], " out of range");
  }
}

void LlamaModel::prepare(ForwardContext& ctx) const {
  const MatmulContext mm{ctx.pool, ctx.scratch.workspace, ctx.isa, ctx.matmul};
  for (const Layer& L : layers_)
    for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) prepare_weight(mm, *w);
  prepare_weight(mm, output_);
}

void LlamaModel::forward(const Batch& b, KvCache& cache, float* logits, ForwardContext& ctx) const {
  check_batch(b, cache, ctx);
  const auto& c = config_;
  const int64_t T = b.size();
  if (T == 0) return;
  const int64_t E = c.n_embd, hd = c.head_dim;
  const int64_t q_dim = int64_t{c.n_head} * hd, kv_dim = int64_t{c.n_kv_head} * hd;
  const int half_rot = c.rope.n_rot / 2;

  ForwardScratch& S = ctx.scratch;
  auto& x_ = S.x;
  auto& xb_ = S.xb;
  auto& q_ = S.q;
  auto& k_ = S.k;
  auto& v_ = S.v;
  auto& att_ = S.att;
  auto& gate_ = S.gate;
  auto& up_ = S.up;
  auto& rope_cos_ = S.rope_cos;
  auto& rope_sin_ = S.rope_sin;
  auto& out_rows_ = S.out_rows;
  x_.resize(T * E);     // [T, n_embd] residual stream
  xb_.resize(T * E);    // [T, n_embd] normed input / projection output
  q_.resize(T * q_dim);
  k_.resize(T * kv_dim);
  v_.resize(T * kv_dim);
  att_.resize(T * q_dim);
  gate_.resize(T * c.n_ff);
  up_.resize(T * c.n_ff);
  rope_cos_.resize(T * half_rot);
  rope_sin_.resize(T * half_rot);

  const MatmulContext mm{ctx.pool, S.workspace, ctx.isa, ctx.matmul};
  const auto& embd_kern = kernels::quant_kernels(token_embd_.type, ctx.isa);
  ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      embd_kern.dequantize_row(token_embd_.row(b.tokens[t]), &x_[t * E], E);
      rope_angles(c.rope, b.pos[t], &rope_cos_[t * half_rot], &rope_sin_[t * half_rot]);
    }
  });

  AttentionParams ap{c.n_head, c.n_kv_head, c.head_dim, 1.0f / std::sqrt(static_cast<float>(hd))};
  for (int l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[l];
    for (int64_t t = 0; t < T; ++t) rms_norm_row(&x_[t * E], L.attn_norm.data(), c.rms_eps, E, &xb_[t * E]);
    const SharedInputOutput qkv[] = {{&L.wq, L.bq.empty() ? nullptr : L.bq.data(), q_.data()},
                                     {&L.wk, L.bk.empty() ? nullptr : L.bk.data(), k_.data()},
                                     {&L.wv, L.bv.empty() ? nullptr : L.bv.data(), v_.data()}};
    matmul_shared_input(mm, qkv, xb_.data(), T);
    for (int64_t t = 0; t < T; ++t) {
      rope_apply(c.rope, &rope_cos_[t * half_rot], &rope_sin_[t * half_rot], &q_[t * q_dim], c.n_head, hd);
      rope_apply(c.rope, &rope_cos_[t * half_rot], &rope_sin_[t * half_rot], &k_[t * kv_dim], c.n_kv_head, hd);
      cache.store(l, b.seq[t], b.pos[t], &k_[t * kv_dim], &v_[t * kv_dim]);
    }
    attend_batch(cache, l, ap, AttentionBatch{T, b.seq.data(), b.pos.data(), q_.data(), att_.data()}, ctx.pool,
                 ctx.attention);
    matmul(mm, L.wo, att_.data(), T, xb_.data());
    for (int64_t i = 0; i < T * E; ++i) x_[i] += xb_[i];

    for (int64_t t = 0; t < T; ++t) rms_norm_row(&x_[t * E], L.ffn_norm.data(), c.rms_eps, E, &xb_[t * E]);
    const SharedInputOutput gate_up[] = {{&L.w_gate, nullptr, gate_.data()}, {&L.w_up, nullptr, up_.data()}};
    matmul_shared_input(mm, gate_up, xb_.data(), T);
    ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
      swiglu_inplace(&gate_[t0 * c.n_ff], &up_[t0 * c.n_ff], (t1 - t0) * c.n_ff, ctx.isa);
    });
    matmul(mm, L.w_down, gate_.data(), T, xb_.data());
    for (int64_t i = 0; i < T * E; ++i) x_[i] += xb_[i];
  }

  for (int64_t t = 0; t < T; ++t) {
    const int64_t p1 = b.pos[t] + 1;
    if (cache.seq_len(b.seq[t]) < p1) cache.set_seq_len(b.seq[t], p1);
  }

  // Final norm and the vocabulary projection, only for rows that want logits.
  const int64_t n_out = b.n_logits();
  if (n_out == 0) return;
  out_rows_.resize(n_out * E);
  for (int64_t t = 0, o = 0; t < T; ++t) {
    if (!b.want_logits[t]) continue;
    rms_norm_row(&x_[t * E], output_norm_.data(), c.rms_eps, E, &out_rows_[o * E]);
    ++o;
  }
  matmul(mm, output_, out_rows_.data(), n_out, logits);
}

}  // namespace kestrel
