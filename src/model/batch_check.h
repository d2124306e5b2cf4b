#pragma once
// The checks every architecture's forward pass makes on its inputs: kernels
// picked for the cache's types, a cache of the model's shape, batch arrays of one
// length, token ids in the vocabulary, positions in the context.
#include "model/model.h"

namespace kestrel {

// Throws kestrel::Error naming the value that does not fit.
void check_forward_batch(const ModelConfig& config, const Batch& batch, const KvCache& cache,
                         const ForwardContext& ctx);

}  // namespace kestrel
