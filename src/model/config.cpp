#include "model/config.h"

#include <cmath>

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

ModelConfig read_gemma3_config(const gguf::File& f, const std::string& arch) {
  ModelConfig c = read_llama_config(f, arch, RopeLayout::Neox);
  const std::string p = arch + ".";
  c.rope_swa = c.rope;
  c.rope_swa.freq_base = static_cast<float>(f.get_f64(p + "rope.freq_base_swa").value_or(10000.0));
  c.rope_swa.freq_scale = 1.0f;  // linear scaling (the 4B and larger) is for the global layers only
  if (!(c.rope_swa.freq_base > 0.0f)) fail("model: rope freq_base_swa must be positive, got ", c.rope_swa.freq_base);

  const uint64_t window = f.get_u64(p + "attention.sliding_window").value_or(0);
  if (window > (uint64_t{1} << 30)) fail("model: sliding window ", window, " is out of range");
  c.sliding_window = static_cast<int>(window);
  if (c.sliding_window > 0) {
    c.swa_layers.assign(static_cast<size_t>(c.n_layer), 0);
    const std::string key = p + "attention.sliding_window_pattern";
    const gguf::Value* v = f.find(key);
    if (v != nullptr && v->type == gguf::ValueType::ARRAY) {
      const auto& items = v->as_array().items;
      if (items.size() != static_cast<size_t>(c.n_layer))
        fail("model: ", key, " has ", items.size(), " entries for ", c.n_layer, " layers");
      for (size_t l = 0; l < items.size(); ++l)
        c.swa_layers[l] = items[l].type == gguf::ValueType::BOOL ? items[l].as_bool() : items[l].as_i64() != 0;
    } else {
      // Every n-th layer global: n = 6 gives 5 local layers, then 1 global.
      const uint64_t n = f.get_u64(key).value_or(6);
      if (n > 1 << 20) fail("model: ", key, " = ", n, " is out of range");
      for (int l = 0; l < c.n_layer; ++l) c.swa_layers[static_cast<size_t>(l)] = n > 0 && l % n < n - 1;
    }
  }

  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.n_layer == 62 ? c.n_embd / c.n_head : c.head_dim));
  c.final_logit_softcap = static_cast<float>(f.get_f64(p + "final_logit_softcapping").value_or(0.0));
  if (c.final_logit_softcap < 0.0f) fail("model: final_logit_softcapping must be >= 0, got ", c.final_logit_softcap);
  return c;
}

}  // namespace kestrel
