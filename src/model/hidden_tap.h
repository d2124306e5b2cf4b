#pragma once
// What a forward pass shows of its residual stream: EAGLE-3 drafts from the
// target's hidden states at three layers (runtime/eagle3_drafter.h), and
// `kestrel dump-features` writes them out to train such a head.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/batch.h"

namespace kestrel {

class HiddenTap {
 public:
  virtual ~HiddenTap() = default;
  // The residual stream at the input of these layers (before the layer's
  // norm, llama.cpp's "layer input"); n_layer means after the last layer,
  // before the output norm. Any order; a model calls capture() once per entry.
  virtual const std::vector<int>& layers() const = 0;
  // x: [batch.size(), n_embd], row t for batch position t; `slot` indexes layers().
  virtual void capture(int slot, const Batch& batch, const float* x, int64_t n_embd) = 0;
  // A host copied sequence src's KV positions [from, n) to dst without
  // evaluating them (the server sharing a cached prompt prefix, from 0; a
  // session keeping a draft tree's accepted branch, from where the branches
  // parted): a tap that keeps rows per sequence copies them too.
  virtual void share_positions(int dst, int src, int64_t from, int64_t n) { (void)dst, (void)src, (void)from, (void)n; }
};

// Calls tap->capture for every slot of layers() that asks for `layer` (no-op without a tap).
inline void tap_layer(HiddenTap* tap, int layer, const Batch& batch, const float* x, int64_t n_embd) {
  if (!tap) return;
  const std::vector<int>& ls = tap->layers();
  for (size_t i = 0; i < ls.size(); ++i)
    if (ls[i] == layer) tap->capture(static_cast<int>(i), batch, x, n_embd);
}

}  // namespace kestrel
