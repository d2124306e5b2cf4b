#include "runtime/memory_footprint.h"

#include <algorithm>

#include "core/dtype.h"

namespace kestrel {

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
  return static_cast<double>(model.weight_bytes()) + per_token * held;
}

}  // namespace kestrel
