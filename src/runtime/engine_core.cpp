#include "runtime/engine_core.h"

#include <filesystem>

#include "core/error.h"
#include "platform/dispatch.h"
#include "runtime/kv_compressor.h"
#include "switches/registry.h"

namespace kestrel {
namespace {

// The configuration as it runs here; refuses what the model's layers cannot
// take: sliding-window layers map positions to rows (kv/attention.h
// window_rows), which neither evicted blocks nor CQ's copies keep.
EngineConfig resolved(const Model& model, EngineConfig c) {
  c.isa = runnable_isa(c.isa);
  check_engine_config(c);
  if (model.config().sliding_window > 0) {
    if (kv_compress_spec(c.kv_compress).on())
      fail("kvcompress: ", model.config().arch, " has sliding-window layers, which do not take evicted blocks yet");
    if (is_cq(c.k_type))
      fail("kv=", dtype_name(c.k_type), ": ", model.config().arch,
           " has sliding-window layers, which do not read a CQ cache yet (use kv=q4_0 or q8_0)");
  }
  return c;
}

// A CQ cache's codebooks, from the sidecar the configuration names or the one next to the model.
KvCq cq_store(const Model& model, const EngineConfig& c) {
  if (!is_cq(c.k_type)) return {};
  const CqSpec spec = parse_cq_spec(dtype_name(c.k_type));
  const std::string path = cq_sidecar_path(model.path(), spec, c.kv_codebook);
  if (!std::filesystem::exists(path))
    fail("kv=", dtype_name(c.k_type), " needs its codebook file, and ", path,
         " does not exist (`kestrel calibrate kv -m ", model.path(), " --cq ", dtype_name(c.k_type), " -o ", path,
         "` writes it; without --kv-codebook it is looked for next to the model)");
  return KvCq{std::make_shared<const CqCodebooks>(load_cq_codebooks(path, cq_model_info(model.file()))), c.cq_window};
}

}  // namespace

EngineCore::EngineCore(const Model& model, const EngineConfig& config, const KvShape& kv_shape)
    : model_(model),
      config_(resolved(model, config)),
      pool_(config_.n_threads),
      cache_(kv_shape, config_.k_type, config_.v_type, config_.isa, config_.kv_rotation,
             kernels::smooths_keys(config_.k_type, config_.attention), cq_store(model, config_)),
      ctx_{pool_, scratch_, config_.isa, config_.matmul,
           kernels::attention_kernel_set(config_.k_type, config_.v_type, config_.attention, config_.isa)} {
  config_.n_threads = pool_.size();
  model_.prepare(ctx_);
}

void EngineCore::forward(const Batch& batch, float* logits, bool decode_kernels) {
  struct Restore {
    bool& flag;
    ~Restore() { flag = false; }
  } restore{ctx_.matmul.decode_kernels};
  ctx_.matmul.decode_kernels = decode_kernels;
  model_.forward(batch, cache_, logits, ctx_);
}

}  // namespace kestrel
