#pragma once
// EAGLE-3 drafting (llama.cpp's draft-eagle3): a one-layer head
// (model/eagle3_head.h) runs over the target's hidden states, which the
// target's own forward passes leave in a TargetFeatures store (the drafter's
// hidden_tap()). Each round the head first catches up with the positions the
// target evaluated since the last round (its KV cache keeps the ones whose
// tokens still match), the last of them paired with the pending token, then
// chains on its own pre-norm outputs, one token per step, until DraftStop
// stops it (runtime/drafter.h). Drafting stays greedy (the draft
// distribution is one-hot, as Sampler::verify's rule assumes).
#include <memory>

#include "kv/kv_cache.h"
#include "model/eagle3_head.h"
#include "platform/thread_pool.h"
#include "runtime/chain_drafter.h"
#include "runtime/target_features.h"

namespace kestrel {

class Eagle3Drafter : public ChainDrafter {
 public:
  // seq: the target's KV sequence whose features this drafter reads (the
  // server's slot; 0 for a Session). The head and the store may be shared by
  // several drafters; each keeps its own head KV cache and threads.
  Eagle3Drafter(std::shared_ptr<const Eagle3Head> head, std::shared_ptr<TargetFeatures> features, int seq,
                const EngineConfig& engine, int64_t n_ctx, int n_min, float p_min);
  double catch_up_seconds() const override { return catch_up_seconds_; }
  HiddenTap* hidden_tap() override { return features_.get(); }
  void prefill(std::span<const int32_t> prompt) override;

 private:
  std::span<const float> start(std::span<const int32_t> context) override;
  // One chained step at the next draft position: input (token, prenorm_), output to prenorm_.
  std::span<const float> step(int32_t token) override;
  void rewind() override;
  bool full() const override { return pos_ >= cache_.shape().n_ctx; }
  int32_t token_of(int32_t column) const override { return head_->target_token(column); }
  Isa isa() const override { return isa_; }
  // Runs the head over positions [from, to] with target features; returns the
  // logits of position `to` and leaves its pre-norm output in prenorm_.
  std::span<const float> catch_up(std::span<const int32_t> context, int64_t from, int64_t to);
  // Brings the head to `context` up to position `last`, keeping the cached
  // positions whose tokens still match; returns the logits of `last` and
  // the number of positions it evaluated.
  std::span<const float> sync(std::span<const int32_t> context, int64_t last, int64_t& n_eval);

  std::shared_ptr<const Eagle3Head> head_;
  std::shared_ptr<TargetFeatures> features_;
  int seq_;
  Isa isa_;  // the engine's, lowered to what this CPU runs
  ThreadPool pool_;
  ForwardScratch scratch_;
  KvCache cache_;
  ForwardContext ctx_;
  // The context the head's KV positions [0, synced_) were computed from
  // (position P from tokens [0, P+1]); positions past synced_ are drafts.
  std::vector<int32_t> seen_;
  int64_t synced_ = 0;
  int64_t pos_ = 0;  // the next draft position
  double catch_up_seconds_ = 0.0;
  Batch batch_;
  std::vector<float> features_rows_, g_, prenorm_, logits_;
  std::vector<float> seed_;  // catch_up's pre-norm output: every branch's first g
};

}  // namespace kestrel
