#include "runtime/memory_footprint.h"

#include <algorithm>

#include "core/dtype.h"
#include "core/error.h"
#include "kv/cq_codebook.h"
#include "kv/cq_sidecar.h"
#include "kv/kv_cache.h"

namespace kestrel {

namespace {

// What a CQ cache holds besides its codes, per model: the codebooks of its
// sidecars as they would be held (kv/cq_sidecar.h: residual stages and
// whitening included), or, where a file cannot be read, one stage without
// whitening (F16, K and V of every layer and kv head: kv/cq_codebook.h); and
// each head's F16 copies of its sink block and its last cq_window rows (one
// block more where the window starts inside a block), at most the rows held.
double cq_fixed_bytes(const Model& model, const EngineConfig& config, double held_rows) {
  if (!uses_cq_cache(config)) return 0.0;
  const ModelConfig& m = model.config();
  const CqSpec k_spec = parse_cq_spec(dtype_name(config.k_type)), v_spec = parse_cq_spec(dtype_name(config.v_type));
  const double heads = static_cast<double>(m.n_layer) * m.n_kv_head;
  const CqSidecarPaths paths = cq_sidecar_paths(model.path(), k_spec, v_spec, config.kv_codebook, config.kv_codebook_v);
  auto held = [&](const std::string& path, bool keys, CqSpec spec) {
    try {
      const CqHeldBytes b = cq_sidecar_held_bytes(path);
      return static_cast<double>(keys ? b.keys : b.values);
    } catch (const Error&) {
      return heads * static_cast<double>(cq_codebook_bytes(spec, m.head_dim));
    }
  };
  const double books = held(paths.keys, true, k_spec) + held(paths.values, false, v_spec);
  const double copied_rows = std::min(held_rows, static_cast<double>(config.cq_window + KvCache::kBlock + KvCq{}.sink));
  return books + heads * copied_rows * m.head_dim * 2.0 * sizeof(uint16_t);
}

}  // namespace

double memory_at_context(const Model& model, const EngineConfig& config, int64_t n_ctx) {
  const ModelConfig& m = model.config();
  const double per_token =
      static_cast<double>(m.n_layer) * m.n_kv_head *
      static_cast<double>(row_bytes(config.k_type, m.head_dim) + row_bytes(config.v_type, m.head_dim));
  double held = static_cast<double>(n_ctx);
  const KvCompressConfig& kc = config.kv_compress;
  if (kc.mode != KvCompressConfig::Mode::Off) {
    const int rate = kc.rate > 0 ? kc.rate : (kc.mode == KvCompressConfig::Mode::Window ? 4 : 1);
    held /= rate;
    if (kc.budget > 0) held = std::min(held, static_cast<double>(kc.budget));
  } else if (kc.budget > 0) {
    held = std::min(held, static_cast<double>(kc.budget));
  }
  return static_cast<double>(model.weight_bytes()) + per_token * held + cq_fixed_bytes(model, config, held);
}

}  // namespace kestrel
