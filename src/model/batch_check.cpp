#include "model/batch_check.h"

#include "core/error.h"

namespace kestrel {

void check_forward_batch(const ModelConfig& c, const Batch& b, const KvCache& cache, const ForwardContext& ctx) {
  const auto& s = cache.shape();
  if (ctx.attention.k_type != cache.k_type() || ctx.attention.v_type != cache.v_type())
    fail("model: attention kernels for K ", dtype_name(ctx.attention.k_type), " and V ",
         dtype_name(ctx.attention.v_type), " given a cache of K ", dtype_name(cache.k_type()), " and V ",
         dtype_name(cache.v_type()));
  if (s.n_layer != c.n_layer || s.n_kv_head != c.n_kv_head || s.head_dim != c.head_dim)
    fail("model: kv cache shape does not match the model");
  if (b.pos.size() != b.tokens.size() || b.seq.size() != b.tokens.size() || b.want_logits.size() != b.tokens.size())
    fail("model: batch arrays have different lengths");
  for (int64_t i = 0; i < b.size(); ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= c.n_vocab)
      fail("model: token id ", b.tokens[i], " is outside the vocabulary (", c.n_vocab, " tokens)");
    if (b.pos[i] < 0 || b.pos[i] >= s.n_ctx)
      fail("context overflow: position ", b.pos[i], " does not fit the context of ", s.n_ctx, " tokens");
    if (b.seq[i] < 0 || b.seq[i] >= s.n_seq) fail("model: sequence id ", b.seq[i], " out of range");
  }
}

}  // namespace kestrel
