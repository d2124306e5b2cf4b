#pragma once
// A draft model (llama.cpp's draft-simple): a smaller model with the target's
// vocabulary runs greedily ahead of the target over its own KV cache. Each
// round it re-syncs with the target's sequence (set_history keeps the cached
// common prefix, so only the tokens the target accepted since are evaluated)
// and drafts until DraftStop stops it (runtime/drafter.h). Given a
// vocabulary subset (model/vocabulary_subset.h) it scores only those tokens:
// its top token and probability are the subset's.
#include <memory>

#include "model/vocabulary_subset.h"
#include "runtime/chain_drafter.h"
#include "runtime/session.h"

namespace kestrel {

class ModelDrafter : public ChainDrafter {
 public:
  // The draft model may be shared by several drafters (the server's slots);
  // check_same_vocabulary first. vocabulary: made from `draft`, or nullptr.
  ModelDrafter(std::shared_ptr<const Model> draft, const SessionOptions& options, int n_min, float p_min,
               std::shared_ptr<const VocabularySubset> vocabulary = nullptr);
  double catch_up_seconds() const override { return catch_up_seconds_; }
  void prefill(std::span<const int32_t> prompt) override;

 private:
  std::span<const float> start(std::span<const int32_t> context) override;
  std::span<const float> step(int32_t token) override { return session_.append(std::span(&token, 1)); }
  void rewind() override { session_.truncate(synced_); }
  bool full() const override { return session_.n_past() >= session_.n_ctx(); }
  int32_t token_of(int32_t column) const override {
    return vocabulary_ ? vocabulary_->ids[static_cast<size_t>(column)] : column;
  }
  Isa isa() const override { return session_.config().isa; }

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const VocabularySubset> vocabulary_;  // before session_, which computes its rows
  Session session_;
  int64_t synced_ = 0;  // the history start() brought the session to
  double catch_up_seconds_ = 0.0;
};

// Throws naming the first difference when `draft` cannot draft for `target`
// (another vocabulary size or another token at some id).
void check_same_vocabulary(const Model& draft, const Model& target);

}  // namespace kestrel
