#include "runtime/memory_footprint.h"

#include <algorithm>

#include "core/dtype.h"
#include "kv/cq_codebook.h"
#include "kv/kv_cache.h"

namespace kestrel {

namespace {

// What a CQ cache holds besides its codes, per model: the codebooks (F16, K
// and V of every layer and kv head: kv/cq_codebook.h; a query-metric sidecar's
// whitening is not counted, the file is not read here) and each head's F16
// copies of its sink block and its last cq_window rows (one block more where
// the window starts inside a block), at most the rows held.
double cq_fixed_bytes(const ModelConfig& m, const EngineConfig& config, double held_rows) {
  if (!uses_cq_cache(config)) return 0.0;
  const CqSpec spec = parse_cq_spec(dtype_name(config.k_type));
  const double heads = static_cast<double>(m.n_layer) * m.n_kv_head;
  const double books = heads * 2.0 * static_cast<double>(cq_codebook_bytes(spec, m.head_dim));
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
  return static_cast<double>(model.weight_bytes()) + per_token * held + cq_fixed_bytes(m, config, held);
}

}  // namespace kestrel
