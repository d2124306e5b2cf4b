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
#include "runtime/drafter.h"
#include "runtime/session.h"

namespace kestrel {

class ModelDrafter : public Drafter {
 public:
  // The draft model may be shared by several drafters (the server's slots);
  // check_same_vocabulary first. vocabulary: made from `draft`, or nullptr.
  ModelDrafter(std::shared_ptr<const Model> draft, const SessionOptions& options, int n_min, float p_min,
               std::shared_ptr<const VocabularySubset> vocabulary = nullptr);
  void draft(std::span<const int32_t> context, int n_max, std::vector<int32_t>& out) override;
  double catch_up_seconds() const override { return catch_up_seconds_; }
  void set_path_floor(double floor) override { stop_.set_path_floor(floor); }

 private:
  std::shared_ptr<const Model> model_;
  std::shared_ptr<const VocabularySubset> vocabulary_;  // before session_, which computes its rows
  Session session_;
  DraftStop stop_;
  double catch_up_seconds_ = 0.0;
  std::vector<float> weights_;  // top_probability's exp scratch
};

// Throws naming the first difference when `draft` cannot draft for `target`
// (another vocabulary size or another token at some id).
void check_same_vocabulary(const Model& draft, const Model& target);

}  // namespace kestrel
