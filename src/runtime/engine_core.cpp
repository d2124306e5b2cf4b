#include "runtime/engine_core.h"

#include "platform/dispatch.h"
#include "switches/registry.h"

namespace kestrel {
namespace {

EngineConfig resolved(EngineConfig c) {
  c.isa = runnable_isa(c.isa);
  check_engine_config(c);
  return c;
}

}  // namespace

EngineCore::EngineCore(const Model& model, const EngineConfig& config, const KvShape& kv_shape)
    : model_(model),
      config_(resolved(config)),
      pool_(config_.n_threads),
      cache_(kv_shape, config_.k_type, config_.v_type, config_.isa, config_.kv_rotation,
             kernels::smooths_keys(config_.k_type, config_.attention)),
      ctx_{pool_, scratch_, config_.isa, config_.matmul,
           kernels::attention_kernel_set(config_.k_type, config_.v_type, config_.attention, config_.isa)} {
  config_.n_threads = pool_.size();
  model_.prepare(ctx_);
}

void EngineCore::forward(const Batch& batch, float* logits) { model_.forward(batch, cache_, logits, ctx_); }

}  // namespace kestrel
