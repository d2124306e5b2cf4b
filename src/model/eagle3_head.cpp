#include "model/eagle3_head.h"

#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "kv/attention_batch.h"
#include "model/batch_check.h"
#include "model/tensor_binding.h"
#include "ops/activation.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "tokenizer/vocab.h"

namespace kestrel {
namespace {

constexpr const char* kArch = "eagle3";

// The head drafts the target's tokens: its file carries the target's
// vocabulary (llama.cpp's converter copies it), checked token by token.
void check_vocabulary(const gguf::File& f, const std::string& path, const Model& target) {
  const std::optional<std::vector<std::string>> tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) fail("EAGLE-3 head ", path, " has no vocabulary (tokenizer.ggml.tokens)");
  const Tokenizer& t = target.tokenizer();
  if (static_cast<int64_t>(tokens->size()) != t.n_vocab())
    fail("EAGLE-3 head ", path, " has a vocabulary of ", tokens->size(), " tokens, the target ", target.path(), " has ",
         t.n_vocab(), ": the head was made for another target");
  for (int32_t id = 0; id < t.n_vocab(); ++id)
    if ((*tokens)[static_cast<size_t>(id)] != t.token_text(id))
      fail("EAGLE-3 head ", path, " has another vocabulary than the target ", target.path(), ": token ", id, " is '",
           (*tokens)[static_cast<size_t>(id)], "' there and '", t.token_text(id), "' in the target");
}

Eagle3Config read_config(const gguf::File& f, const std::string& path, const Model& target) {
  Eagle3Config c;
  c.layer = read_llama_config(f, kArch, RopeLayout::Norm);
  if (c.layer.n_layer != 1) fail("EAGLE-3 head ", path, ": block_count is ", c.layer.n_layer, ", a head has 1 layer");
  c.layer.n_vocab = target.config().n_vocab;
  const std::string p = std::string(kArch) + ".";
  const std::optional<std::vector<int64_t>> layers = f.get_int_array(p + "target_layers");
  if (!layers) fail("EAGLE-3 head ", path, " has no ", p, "target_layers");
  if (layers->size() != 3)
    fail("EAGLE-3 head ", path, ": ", p, "target_layers has ", layers->size(), " entries, not 3");
  const int n_layer = target.config().n_layer;
  for (int64_t l : *layers) {
    if (l < 0 || l > n_layer)
      fail("EAGLE-3 head ", path, " reads target layer ", l, ", but the target ", target.path(), " has ", n_layer,
           " layers: the head was made for another target");
    c.target_layers.push_back(static_cast<int>(l));
  }
  const std::optional<uint64_t> hidden = f.get_u64(p + "target_hidden_size");
  if (!hidden) fail("EAGLE-3 head ", path, " has no ", p, "target_hidden_size");
  if (*hidden != static_cast<uint64_t>(target.config().n_embd))
    fail("EAGLE-3 head ", path, " was made for a target of hidden size ", *hidden, ", the target ", target.path(),
         " has ", target.config().n_embd);
  c.target_hidden = static_cast<int>(*hidden);
  c.norm_before_residual = f.get_bool(p + "norm_before_residual").value_or(false);
  c.norm_before_fc = f.get_bool(p + "norm_before_fc").value_or(false);
  return c;
}

}  // namespace

Eagle3Head::Eagle3Head(const std::string& path, const Model& target) {
  file_ = std::make_shared<const gguf::File>(gguf::File::open(path));
  const gguf::File& f = *file_;
  const std::string arch = f.get_string("general.architecture").value_or("");
  if (arch != kArch)
    fail(path, " is a '", arch,
         "' model, not an EAGLE-3 head (general.architecture 'eagle3'); a draft model goes "
         "with --spec-type draft-simple");
  if (target.config().arch != "llama" && target.config().arch != "qwen2")
    fail("EAGLE-3: the target's architecture '", target.config().arch, "' is not supported (llama, qwen2)");
  config_ = read_config(f, path, target);
  check_vocabulary(f, path, target);
  const ModelConfig& c = config_.layer;
  const int64_t E = c.n_embd, wide = 2 * E, q_dim = int64_t{c.n_head} * c.head_dim,
                kv_dim = int64_t{c.n_kv_head} * c.head_dim, feat = features_width();

  fc_ = bind_matrix(f, "fc.weight", feat, E);
  if (config_.norm_before_fc) enc_norm_ = bind_vector(f, "enc.output_norm.weight", feat);
  const std::string b = "blk.0.";
  attn_norm_ = bind_vector(f, b + "attn_norm.weight", E);
  hidden_norm_ = bind_vector(f, b + "attn_norm_2.weight", E);
  wq_ = bind_matrix(f, b + "attn_q.weight", wide, q_dim);
  wk_ = bind_matrix(f, b + "attn_k.weight", wide, kv_dim);
  wv_ = bind_matrix(f, b + "attn_v.weight", wide, kv_dim);
  wo_ = bind_matrix(f, b + "attn_output.weight", q_dim, E);
  ffn_norm_ = bind_vector(f, b + "ffn_norm.weight", E);
  w_gate_ = bind_matrix(f, b + "ffn_gate.weight", E, c.n_ff);
  w_up_ = bind_matrix(f, b + "ffn_up.weight", E, c.n_ff);
  w_down_ = bind_matrix(f, b + "ffn_down.weight", c.n_ff, E);
  output_norm_ = bind_vector(f, "output_norm.weight", E);
  if (f.find_tensor("rope_freqs.weight"))
    config_.layer.rope.freq_factors = bind_vector(f, "rope_freqs.weight", c.rope.n_rot / 2);

  // Token embeddings: the head's own, or the target's (which must be plain rows of the head's width).
  if (f.find_tensor("token_embd.weight")) {
    token_embd_ = bind_matrix(f, "token_embd.weight", E, c.n_vocab);
  } else {
    const Weight* t = target.plain_token_embeddings();
    if (!t) fail("EAGLE-3 head ", path, " has no token_embd and the target's embeddings cannot be shared");
    if (t->cols != E)
      fail("EAGLE-3 head ", path, " has n_embd ", E, " but shares the target's embeddings of width ", t->cols);
    token_embd_ = *t;
  }

  // The output: the head's own over a draft vocabulary (d2t), or the target's.
  const gguf::TensorInfo* d2t = f.find_tensor("d2t");
  if (const gguf::TensorInfo* out = f.find_tensor("output.weight")) {
    if (out->ne.size() != 2) fail("EAGLE-3 head ", path, ": output.weight must have 2 dimensions");
    config_.n_draft_vocab = static_cast<int>(out->ne[1]);
    output_ = bind_matrix(f, "output.weight", E, config_.n_draft_vocab);
  } else {
    const Weight* t = target.output_projection();
    if (!t || t->cols != E) fail("EAGLE-3 head ", path, " has no output.weight and cannot share the target's");
    output_ = *t;
    config_.n_draft_vocab = c.n_vocab;
  }
  if (d2t) {
    if (d2t->type != DType::I64 || d2t->ne.size() != 1 || d2t->ne[0] != config_.n_draft_vocab)
      fail("EAGLE-3 head ", path, ": d2t must be I64 [", config_.n_draft_vocab, "], found ", dtype_name(d2t->type), " ",
           gguf::shape_text(d2t->ne));
    d2t_.resize(static_cast<size_t>(config_.n_draft_vocab));
    std::set<int64_t> seen;
    for (int i = 0; i < config_.n_draft_vocab; ++i) {
      int64_t id;
      std::memcpy(&id, d2t->data + static_cast<size_t>(i) * sizeof(int64_t), sizeof(id));
      if (id < 0 || id >= c.n_vocab || !seen.insert(id).second)
        fail("EAGLE-3 head ", path, ": d2t[", i, "] = ", id, " is outside the target's vocabulary or repeated");
      d2t_[static_cast<size_t>(i)] = static_cast<int32_t>(id);
    }
  } else if (config_.n_draft_vocab != c.n_vocab) {
    fail("EAGLE-3 head ", path, " has a draft vocabulary of ", config_.n_draft_vocab, " tokens and no d2t map");
  }
}

void Eagle3Head::prepare(ForwardContext& ctx) const {
  const MatmulContext mm{ctx.pool, ctx.scratch.workspace, ctx.isa, ctx.matmul};
  for (const Weight* w : {&fc_, &wq_, &wk_, &wv_, &wo_, &w_gate_, &w_up_, &w_down_, &output_}) prepare_weight(mm, *w);
}

void Eagle3Head::encode(const float* features, int64_t n, float* g, ForwardContext& ctx) const {
  const MatmulContext mm{ctx.pool, ctx.scratch.workspace, ctx.isa, ctx.matmul};
  if (!config_.norm_before_fc) {
    matmul(mm, fc_, features, n, g);
    return;
  }
  const int64_t F = features_width();
  std::vector<float>& normed = ctx.scratch.wide;
  normed.resize(static_cast<size_t>(n * F));
  for (int64_t t = 0; t < n; ++t)
    rms_norm_row(features + t * F, enc_norm_.data(), config_.layer.rms_eps, F, &normed[t * F]);
  matmul(mm, fc_, normed.data(), n, g);
}

void Eagle3Head::decode(const Batch& b, const float* g, KvCache& cache, ForwardContext& ctx, float* prenorm,
                        float* logits) const {
  const ModelConfig& c = config_.layer;
  check_forward_batch(c, b, cache, ctx);
  const int64_t T = b.size();
  if (T == 0) return;
  const int64_t E = c.n_embd, hd = c.head_dim, q_dim = int64_t{c.n_head} * hd, kv_dim = int64_t{c.n_kv_head} * hd;
  const int half_rot = c.rope.n_rot / 2;
  ForwardScratch& S = ctx.scratch;
  S.x.resize(T * E);
  S.xb.resize(T * E);
  S.wide.resize(T * 2 * E);
  S.q.resize(T * q_dim);
  S.k.resize(T * kv_dim);
  S.v.resize(T * kv_dim);
  S.att.resize(T * q_dim);
  S.gate.resize(T * c.n_ff);
  S.up.resize(T * c.n_ff);
  S.rope_cos.resize(T * half_rot);
  S.rope_sin.resize(T * half_rot);
  float *x = S.x.data(), *xb = S.xb.data(), *wide = S.wide.data();

  // [rmsnorm(embd(t)) * attn_norm ; rmsnorm(g) * attn_norm_2] per row.
  const auto& embd_kern = kernels::quant_kernels(token_embd_.type, ctx.isa);
  for (int64_t t = 0; t < T; ++t) {
    embed_row(token_embd_, b.tokens[t], embd_kern, xb + t * E);
    rms_norm_row(xb + t * E, attn_norm_.data(), c.rms_eps, E, wide + t * 2 * E);
    rms_norm_row(g + t * E, hidden_norm_.data(), c.rms_eps, E, wide + t * 2 * E + E);
    rope_angles(c.rope, b.pos[t], &S.rope_cos[t * half_rot], &S.rope_sin[t * half_rot]);
  }
  const MatmulContext mm{ctx.pool, S.workspace, ctx.isa, ctx.matmul};
  const SharedInputOutput qkv[] = {
      {&wq_, nullptr, S.q.data()}, {&wk_, nullptr, S.k.data()}, {&wv_, nullptr, S.v.data()}};
  matmul_shared_input(mm, qkv, wide, T);
  for (int64_t t = 0; t < T; ++t) {
    rope_apply(c.rope, &S.rope_cos[t * half_rot], &S.rope_sin[t * half_rot], &S.q[t * q_dim], c.n_head, hd);
    rope_apply(c.rope, &S.rope_cos[t * half_rot], &S.rope_sin[t * half_rot], &S.k[t * kv_dim], c.n_kv_head, hd);
    cache.store(0, b.seq[t], b.pos[t], &S.k[t * kv_dim], &S.v[t * kv_dim]);
  }
  const AttentionParams ap{c.n_head, c.n_kv_head, c.head_dim, 1.0f / std::sqrt(static_cast<float>(hd))};
  attend_batch(cache, 0, ap, AttentionBatch{T, b.seq.data(), b.pos.data(), S.q.data(), S.att.data()}, ctx.pool,
               ctx.attention);
  matmul(mm, wo_, S.att.data(), T, xb);
  for (int64_t t = 0; t < T; ++t) {
    // The residual: g itself, or its normed copy (norm_before_residual).
    const float* r = config_.norm_before_residual ? wide + t * 2 * E + E : g + t * E;
    for (int64_t i = 0; i < E; ++i) x[t * E + i] = xb[t * E + i] + r[i];
  }
  for (int64_t t = 0; t < T; ++t) rms_norm_row(x + t * E, ffn_norm_.data(), c.rms_eps, E, xb + t * E);
  const SharedInputOutput gate_up[] = {{&w_gate_, nullptr, S.gate.data()}, {&w_up_, nullptr, S.up.data()}};
  matmul_shared_input(mm, gate_up, xb, T);
  swiglu_inplace(S.gate.data(), S.up.data(), T * c.n_ff, ctx.isa);
  matmul(mm, w_down_, S.gate.data(), T, xb);
  for (int64_t i = 0; i < T * E; ++i) x[i] += xb[i];
  std::memcpy(prenorm, x, static_cast<size_t>(T * E) * sizeof(float));
  for (int64_t t = 0; t < T; ++t) cache.grow_seq_len(b.seq[t], int64_t{b.pos[t]} + 1);

  const int64_t n_out = b.n_logits();
  if (n_out == 0) return;
  S.out_rows.resize(n_out * E);
  for (int64_t t = 0, o = 0; t < T; ++t)
    if (b.want_logits[t]) rms_norm_row(x + t * E, output_norm_.data(), c.rms_eps, E, &S.out_rows[o++ * E]);
  matmul(mm, output_, S.out_rows.data(), n_out, logits);
}

}  // namespace kestrel
