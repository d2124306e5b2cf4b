#pragma once
// The target model's hidden states that an EAGLE-3 head drafts from: the
// residual stream at its three layers for every (sequence, position) the
// target evaluated, kept in F16 (3 x n_embd x 2 bytes per position: 5.4 KB for
// Qwen2.5-0.5B, 22 MB for a 4096-token context). A forward pass writes the
// rows of its batch (HiddenTap); a rejected draft's rows are overwritten when
// their positions are evaluated again. One store serves every slot of a
// server, keyed by the KV cache's sequence id; `kestrel dump-features` writes
// a store's rows out as training data.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/hidden_tap.h"
#include "platform/cpu.h"

namespace kestrel {

class TargetFeatures : public HiddenTap {
 public:
  // isa: the F16 row conversions' level.
  TargetFeatures(std::vector<int> layers, int64_t n_embd, int64_t n_ctx, int n_seq, Isa isa);
  const std::vector<int>& layers() const override { return layers_; }
  void capture(int slot, const Batch& batch, const float* x, int64_t n_embd) override;
  // Sequence dst's positions [from, n) take src's rows (the server shares a
  // cached prompt prefix; a session keeps a draft tree's branch).
  void share_positions(int dst, int src, int64_t from, int64_t n) override;
  // Row width: layers().size() * n_embd.
  int64_t width() const { return width_; }
  // The features of (seq, pos), layers in layers() order: [width()] floats.
  void row(int seq, int64_t pos, float* out) const;
  // The F16 rows of positions [0, n) of seq, as stored: [n, width()].
  std::span<const uint16_t> f16_rows(int seq, int64_t n) const;

 private:
  uint16_t* rows_of(int seq);
  const uint16_t* written_rows(int seq, int64_t end) const;  // throws when seq has none or end > n_ctx

  std::vector<int> layers_;
  int64_t n_embd_, width_, n_ctx_;
  Isa isa_;
  // Per sequence [n_ctx, width], allocated on first use and left uninitialized:
  // the pages of positions never reached are never touched (a 32k context
  // reserves 176 MB for Qwen2.5-0.5B but holds what the conversation filled).
  std::vector<std::unique_ptr<uint16_t[]>> rows_;
};

}  // namespace kestrel
