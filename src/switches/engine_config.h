#pragma once
// The engine configuration: one typed slot per switchable part of the engine.
// Every host (Session for run/chat/bench, the Scheduler for serve, the
// perplexity/KLD evaluator) builds its engine core (runtime/engine_core.h) from
// one of these. A switch is a registry entry (switches/registry.h) that
// installs a value into its slot; nothing else reads switches, and no kernel
// looks at the environment. docs/architecture.md has the picture.
#include <cstdint>

#include "core/dtype.h"
#include "kernels/attention_set.h"
#include "ops/matmul.h"
#include "platform/cpu.h"
#include "sampling/params.h"

namespace kestrel {

// How tokens are produced after the prompt: the slot speculative decoding
// (draft models, n-gram lookup, EAGLE-3, QSpec) plugs into.
enum class DecodePolicy : uint8_t {
  Plain,  // one forward pass of the target model per token
};

struct EngineConfig {
  int n_threads = 0;                   // `threads`; 0 = one per core
  Isa isa = best_isa();                // `isa`: the highest kernel level any kernel may use
  DType k_type = DType::F16;           // `kv_k` (`kv` sets both): the KV store's key element type
  DType v_type = DType::F16;           // `kv_v` (`kv` sets both): its value element type
  bool kv_rotation = true;             // `kv_rot`: llama.cpp's Hadamard rotation of a block-quantized K/V
  kernels::AttentionAlgo attention = kernels::AttentionAlgo::Exact;  // `attn`: with the KV types, picks the attention kernels
  MatmulOptions matmul = {};           // `matmul`: the weight kernels
  SamplerKind sampler = SamplerKind::Auto;  // `sampling`
  DecodePolicy decode = DecodePolicy::Plain;
};

}  // namespace kestrel
