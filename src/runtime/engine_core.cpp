#include "runtime/engine_core.h"

#include <filesystem>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "model/teal_sidecar.h"
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
  if (c.matmul.activation_bits != 8) {
    if (c.matmul.activation_bits != 4) fail("act: activations of ", c.matmul.activation_bits, " bits (a8 or a4)");
    check_four_bit_activations(model);
  }
  return c;
}

// A CQ cache's codebooks, from the sidecars the configuration names or the
// ones next to the model: one file, or the keys' and the values' when they are
// two CQ types (kv=cq2/cq1).
KvCq cq_store(const Model& model, const EngineConfig& c) {
  if (!uses_cq_cache(c)) return {};
  const CqModelInfo info = cq_model_info(model.file());
  auto load = [&](DType t, const std::string& path, const char* flag) {
    if (!std::filesystem::exists(path))
      fail("kv=", kv_value(c), " needs the ", dtype_name(t), " codebook file, and ", path,
           " does not exist (`kestrel calibrate kv -m ", model.path(), " --cq ", dtype_name(t), " -o ", path,
           "` writes it; without ", flag, " it is looked for next to the model)");
    return load_cq_codebooks(path, info);
  };
  const CqSidecarPaths paths = cq_sidecar_paths(model.path(), parse_cq_spec(dtype_name(c.k_type)),
                                                parse_cq_spec(dtype_name(c.v_type)), c.kv_codebook, c.kv_codebook_v);
  CqCodebooks books = load(c.k_type, paths.keys, "--kv-codebook");
  if (paths.values != paths.keys)
    books = mixed_cq_codebooks(std::move(books), load(c.v_type, paths.values, "--kv-codebook-v"));
  return KvCq{std::make_shared<const CqCodebooks>(std::move(books)), c.cq_window};
}

// TEAL's thresholds for the configured sparsity, from the sidecar.
std::unique_ptr<const ActivationSparsity> teal_thresholds(const Model& model, const EngineConfig& c) {
  if (c.teal.sparsity <= 0.0) return nullptr;
  // TEAL's sparse decode reads float inputs: 4-bit codes would apply to some steps and not others.
  if (c.matmul.activation_bits != 8) fail("teal and act=a4 cannot be combined yet");
  if (!model.thins_projection_inputs())
    fail("teal: ", model.config().arch, " does not thin its projections' inputs yet (llama and qwen2 do)");
  const std::string path = teal_sidecar_path(model.path(), c.teal.file);
  if (!std::filesystem::exists(path))
    fail("teal=", c.teal.sparsity, " needs the model's thresholds, and ", path, " does not exist (`kestrel calibrate teal -m ",
         model.path(), " -o ", path, "` writes it; without --teal-file it is looked for next to the model)");
  const TealTables tables = load_teal_tables(path, model.file());
  auto a = std::make_unique<ActivationSparsity>(tables.activation_sparsity(tables.level(c.teal.sparsity)));
  a->all_rows = c.teal.all_rows;
  a->max_density = c.teal.max_density;
  a->paired = c.teal.paired;
  return a;
}

}  // namespace

void check_four_bit_activations(const Model& model) {
  const gguf::File& f = model.file();
  const bool tied = f.find_tensor("output.weight") == nullptr;
  for (const gguf::TensorInfo& t : f.tensors()) {
    if (t.ne.size() < 2 || t.ne[1] <= 1 || t.name.find(".weight") == std::string::npos) continue;
    if (t.name == "token_embd.weight" && !tied) continue;  // a lookup table, no product
    if (!kernels::has_quant_kernels(t.type)) continue;     // the loader refuses those
    if (kernels::quant_kernels(kernels::quant_kernels(t.type).vec_dot_type).quantize_row_a4 == nullptr)
      fail("act=a4: ", t.name, " is ", dtype_name(t.type),
           ", whose products take float activations; 4-bit activations need block-quantized weights (kestrel "
           "quantize)");
  }
}

EngineCore::EngineCore(const Model& model, const EngineConfig& config, const KvShape& kv_shape,
                       const Weight* output_head)
    : model_(model),
      config_(resolved(model, config)),
      pool_(config_.n_threads),
      cache_(kv_shape, config_.k_type, config_.v_type, config_.isa, config_.kv_rotation,
             kernels::smooths_keys(config_.k_type, config_.attention), cq_store(model, config_)),
      sparsity_(teal_thresholds(model, config_)),
      ctx_{pool_, scratch_, config_.isa, config_.matmul,
           kernels::attention_kernel_set(config_.k_type, config_.v_type, config_.attention, config_.isa)} {
  ctx_.sparsity = sparsity_.get();
  ctx_.output_head = output_head;
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

void EngineCore::run_block(Model::Block block, int layer, const Batch& batch, const float* normed, float* out,
                           const ActivationSparsity* sparsity) {
  struct Restore {
    ForwardContext& ctx;
    const ActivationSparsity* was;
    ~Restore() { ctx.sparsity = was; }
  } restore{ctx_, ctx_.sparsity};
  ctx_.sparsity = sparsity;
  model_.run_block(block, layer, batch, normed, cache_, out, ctx_);
}

}  // namespace kestrel
