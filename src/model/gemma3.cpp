#include "model/gemma3.h"

#include <cmath>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "kv/attention_batch.h"
#include "model/batch_check.h"
#include "model/tensor_binding.h"
#include "ops/embedding.h"
#include "ops/gelu.h"
#include "ops/matmul.h"
#include "ops/norm.h"

namespace kestrel {

Gemma3Model::Gemma3Model(std::shared_ptr<const gguf::File> file, const std::string& arch,
                         const LoadOptions& options) {
  file_ = std::move(file);
  const gguf::File& f = *file_;
  config_ = read_gemma3_config(f, arch);
  auto& c = config_;

  TokenEmbeddings embd = bind_token_embeddings(f, c.n_embd);  // tied as published
  c.n_vocab = embd.n_vocab;
  token_embd_ = embd.token_embd;
  output_ = embd.output;
  output_norm_ = bind_vector(f, "output_norm.weight", c.n_embd);

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
    L.q_norm = bind_vector(f, p + "attn_q_norm.weight", c.head_dim);
    L.k_norm = bind_vector(f, p + "attn_k_norm.weight", c.head_dim);
    L.post_attn_norm = bind_vector(f, p + "post_attention_norm.weight", c.n_embd);
    L.ffn_norm = bind_vector(f, p + "ffn_norm.weight", c.n_embd);
    L.w_gate = bind_matrix(f, p + "ffn_gate.weight", c.n_embd, c.n_ff);
    L.w_up = bind_matrix(f, p + "ffn_up.weight", c.n_embd, c.n_ff);
    L.w_down = bind_matrix(f, p + "ffn_down.weight", c.n_ff, c.n_embd);
    L.post_ffn_norm = bind_vector(f, p + "post_ffw_norm.weight", c.n_embd);
  }
  VocabSpec spec = vocab_spec_from_gguf(f);
  // Gemma has one chat format; files converted without a template get it.
  if (spec.chat_template.empty()) spec.chat_template = "gemma";
  finish_loading(std::move(spec));
  (void)options;
}

void Gemma3Model::prepare(ForwardContext& ctx) const {
  const MatmulContext mm{ctx.pool, ctx.scratch.workspace, ctx.isa, ctx.matmul};
  for (const Layer& L : layers_)
    for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) prepare_weight(mm, *w);
  prepare_weight(mm, vocabulary_projection(output_, ctx));
}

void Gemma3Model::forward(const Batch& b, KvCache& cache, float* logits, ForwardContext& ctx) const {
  check_forward_batch(config_, b, cache, ctx);
  const auto& c = config_;
  const int64_t T = b.size();
  if (T == 0) return;
  const int64_t E = c.n_embd, hd = c.head_dim, F = c.n_ff;
  const int64_t q_dim = int64_t{c.n_head} * hd, kv_dim = int64_t{c.n_kv_head} * hd;
  const int half_rot = c.rope.n_rot / 2;
  const float eps = c.rms_eps;

  ForwardScratch& S = ctx.scratch;
  S.x.resize(T * E);     // [T, n_embd] residual stream
  S.xb.resize(T * E);    // [T, n_embd] normed input / sub-layer output
  S.q.resize(T * q_dim);
  S.k.resize(T * kv_dim);
  S.v.resize(T * kv_dim);
  S.att.resize(T * q_dim);
  S.gate.resize(T * F);
  S.up.resize(T * F);
  // [2][T, n_rot/2]: the global layers' angles, then the local layers'.
  S.rope_cos.resize(2 * T * half_rot);
  S.rope_sin.resize(2 * T * half_rot);
  float *x = S.x.data(), *xb = S.xb.data(), *q = S.q.data(), *k = S.k.data(), *v = S.v.data();
  float *cos_g = S.rope_cos.data(), *sin_g = S.rope_sin.data();
  float *cos_l = cos_g + T * half_rot, *sin_l = sin_g + T * half_rot;

  const MatmulContext mm{ctx.pool, S.workspace, ctx.isa, ctx.matmul};
  const auto& embd_kern = kernels::quant_kernels(token_embd_.type, ctx.isa);
  const float embd_scale = std::sqrt(static_cast<float>(E));
  ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      embed_row(token_embd_, b.tokens[t], embd_kern, &x[t * E]);
      for (int64_t i = 0; i < E; ++i) x[t * E + i] *= embd_scale;
      rope_angles(c.rope, b.pos[t], &cos_g[t * half_rot], &sin_g[t * half_rot]);
      rope_angles(c.rope_swa, b.pos[t], &cos_l[t * half_rot], &sin_l[t * half_rot]);
    }
  });
  // x[t] += rmsnorm(y[t]) * w, row by row: the post-norms and residual adds.
  auto add_normed = [&](const float* y, const std::vector<float>& w) {
    ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
      thread_local std::vector<float> row;
      row.resize(static_cast<size_t>(E));
      for (int64_t t = t0; t < t1; ++t) {
        rms_norm_row(&y[t * E], w.data(), eps, E, row.data());
        for (int64_t i = 0; i < E; ++i) x[t * E + i] += row[static_cast<size_t>(i)];
      }
    });
  };

  // The query scale goes onto q after RoPE and the kernels scale by 1, as
  // llama.cpp does (the F16 query the kernels round to is then the same).
  const float q_scale = c.attn_scale > 0.0f ? c.attn_scale : 1.0f / std::sqrt(static_cast<float>(hd));
  for (int l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[l];
    tap_layer(ctx.hidden_tap, l, b, x, E);
    const bool local = c.is_swa(l);
    const RopeParams& rope = local ? c.rope_swa : c.rope;
    const float* cos_t = local ? cos_l : cos_g;
    const float* sin_t = local ? sin_l : sin_g;

    for (int64_t t = 0; t < T; ++t) rms_norm_row(&x[t * E], L.attn_norm.data(), eps, E, &xb[t * E]);
    const SharedInputOutput qkv[] = {{&L.wq, nullptr, q}, {&L.wk, nullptr, k}, {&L.wv, nullptr, v}};
    matmul_shared_input(mm, qkv, xb, T);
    ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) {
        float* qt = &q[t * q_dim];
        float* kt = &k[t * kv_dim];
        for (int h = 0; h < c.n_head; ++h) rms_norm_row(qt + h * hd, L.q_norm.data(), eps, hd, qt + h * hd);
        for (int h = 0; h < c.n_kv_head; ++h) rms_norm_row(kt + h * hd, L.k_norm.data(), eps, hd, kt + h * hd);
        rope_apply(rope, &cos_t[t * half_rot], &sin_t[t * half_rot], qt, c.n_head, static_cast<int>(hd));
        rope_apply(rope, &cos_t[t * half_rot], &sin_t[t * half_rot], kt, c.n_kv_head, static_cast<int>(hd));
        for (int64_t i = 0; i < q_dim; ++i) qt[i] *= q_scale;
      }
    });
    for (int64_t t = 0; t < T; ++t) cache.store(l, b.seq[t], b.pos[t], &k[t * kv_dim], &v[t * kv_dim]);
    AttentionParams ap{c.n_head, c.n_kv_head, c.head_dim, 1.0f};
    if (local) ap.window = c.sliding_window;
    attend_batch(cache, l, ap, AttentionBatch{T, b.seq.data(), b.pos.data(), q, S.att.data()}, ctx.pool,
                 ctx.attention, ctx.observer);
    matmul(mm, L.wo, S.att.data(), T, xb);
    add_normed(xb, L.post_attn_norm);

    for (int64_t t = 0; t < T; ++t) rms_norm_row(&x[t * E], L.ffn_norm.data(), eps, E, &xb[t * E]);
    const SharedInputOutput gate_up[] = {{&L.w_gate, nullptr, S.gate.data()}, {&L.w_up, nullptr, S.up.data()}};
    matmul_shared_input(mm, gate_up, xb, T);
    ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
      geglu_inplace(&S.gate[t0 * F], &S.up[t0 * F], (t1 - t0) * F);
    });
    matmul(mm, L.w_down, S.gate.data(), T, xb);
    add_normed(xb, L.post_ffn_norm);
  }

  tap_layer(ctx.hidden_tap, c.n_layer, b, x, E);
  for (int64_t t = 0; t < T; ++t) cache.grow_seq_len(b.seq[t], int64_t{b.pos[t]} + 1);

  // Final norm and the vocabulary projection, only for rows that want logits.
  const int64_t n_out = b.n_logits();
  if (n_out == 0) return;
  S.out_rows.resize(n_out * E);
  for (int64_t t = 0, o = 0; t < T; ++t) {
    if (!b.want_logits[t]) continue;
    rms_norm_row(&x[t * E], output_norm_.data(), eps, E, &S.out_rows[o * E]);
    ++o;
  }
  matmul(mm, vocabulary_projection(output_, ctx), S.out_rows.data(), n_out, logits);
  if (c.final_logit_softcap > 0.0f) {
    const float cap = c.final_logit_softcap, inv_cap = 1.0f / cap;
    const int64_t n = n_out * c.n_vocab;
    ctx.pool.parallel_for(n, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) logits[i] = std::tanh(logits[i] * inv_cap) * cap;
    });
  }
}

}  // namespace kestrel
