#include "model/config.h"

#include "core/error.h"
#include "gguf/gguf.h"

namespace kestrel {
namespace {

int read_positive(const gguf::File& f, const std::string& key, uint64_t max) {
  const uint64_t v = f.require_u64(key);
  if (v == 0 || v > max) fail("model: metadata ", key, " = ", v, " is out of range (1..", max, ")");
  return static_cast<int>(v);
}

}  // namespace

ModelConfig read_llama_config(const gguf::File& f, const std::string& arch, RopeLayout layout) {
  ModelConfig c;
  c.arch = arch;
  c.name = f.get_string("general.name").value_or("");
  const std::string p = arch + ".";
  c.n_embd = read_positive(f, p + "embedding_length", 1 << 16);
  c.n_layer = read_positive(f, p + "block_count", 1024);
  c.n_ff = read_positive(f, p + "feed_forward_length", 1 << 20);
  c.n_head = read_positive(f, p + "attention.head_count", 1024);
  c.n_kv_head = f.has(p + "attention.head_count_kv") ? read_positive(f, p + "attention.head_count_kv", 1024)
                                                     : c.n_head;
  if (c.n_head % c.n_kv_head != 0)
    fail("model: ", c.n_head, " attention heads are not a multiple of ", c.n_kv_head, " kv heads");
  c.head_dim = f.has(p + "attention.key_length") ? read_positive(f, p + "attention.key_length", 512)
                                                 : c.n_embd / c.n_head;
  if (c.head_dim * c.n_head != c.n_embd && !f.has(p + "attention.key_length"))
    fail("model: embedding length ", c.n_embd, " is not a multiple of ", c.n_head, " heads");
  if (c.head_dim > 512 || c.head_dim % 2 != 0) fail("model: head dimension ", c.head_dim, " is not supported");
  c.n_ctx_train = f.get_u64(p + "context_length").value_or(2048);
  c.rms_eps = static_cast<float>(f.get_f64(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  if (!(c.rms_eps > 0.0f)) fail("model: rms epsilon must be positive, got ", c.rms_eps);

  c.rope.layout = layout;
  c.rope.freq_base = static_cast<float>(f.get_f64(p + "rope.freq_base").value_or(10000.0));
  c.rope.n_rot = f.has(p + "rope.dimension_count") ? read_positive(f, p + "rope.dimension_count", 512)
                                                   : c.head_dim;
  if (c.rope.n_rot > c.head_dim || c.rope.n_rot % 2 != 0)
    fail("model: rope dimension count ", c.rope.n_rot, " does not fit head dimension ", c.head_dim);
  if (!(c.rope.freq_base > 0.0f)) fail("model: rope freq_base must be positive, got ", c.rope.freq_base);

  const std::string scaling = f.get_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    const double factor = f.get_f64(p + "rope.scaling.factor").value_or(1.0);
    if (!(factor > 0.0)) fail("model: rope scaling factor must be positive, got ", factor);
    c.rope.freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none") {
    fail("model: rope scaling type '", scaling, "' is not supported (supported: none, linear)");
  }
  return c;
}

}  // namespace kestrel
