#pragma once
// What a configuration holds in memory, from the tensor and cache layouts
// (no allocation): `kestrel tune`'s memory column and the running check's
// memory ratio in `serve`.
#include <cstdint>

#include "model/model.h"
#include "switches/engine_config.h"

namespace kestrel {

// Weights plus the KV cache a configuration holds at n_ctx tokens (KV-Compress
// keeps 1/rate of it, a KV budget at most that many); for the CQ types also the
// codebooks and the F16 copies of the sink and the window.
double memory_at_context(const Model& model, const EngineConfig& config, int64_t n_ctx);

}  // namespace kestrel
