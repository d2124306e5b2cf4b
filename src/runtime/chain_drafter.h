#pragma once
// The drafters that run a model (a draft model: ModelDrafter; an EAGLE-3
// head: Eagle3Drafter) draft the same way: greedy chains from a state they can
// rewind, each token the model's top one while DraftStop lets it go on. As a
// tree (DraftTree) the next most likely first tokens start branches of their
// own, each a greedy chain: alternatives where a draft is wrong most often,
// at its first token. A branch is drafted only when it pays (DraftStop::
// stop_alternative); its rows cost the target one pending token more.
#include <span>
#include <vector>

#include "platform/cpu.h"
#include "runtime/drafter.h"

namespace kestrel {

class ChainDrafter : public Drafter {
 public:
  ChainDrafter(int n_min, float p_min) : stop_(n_min, p_min), alt_stop_(0, p_min) {}
  void draft_tree(std::span<const int32_t> context, int n_max, int n_branches, DraftTree& out) final;
  void set_path_floor(double floor) final {
    stop_.set_path_floor(floor);
    alt_stop_.set_path_floor(floor);
  }

 protected:
  // Brings the model to `context` (the sequence so far, the pending token
  // last) and returns its logits for the first drafted token; empty when it
  // cannot draft there.
  virtual std::span<const float> start(std::span<const int32_t> context) = 0;
  // Feeds a drafted token and returns the logits for the next one.
  virtual std::span<const float> step(int32_t token) = 0;
  // Back to the state start() left: the next branch starts from there.
  virtual void rewind() = 0;
  // Whether the model's context has no room for another step.
  virtual bool full() const = 0;
  // The token of a logits column (a draft vocabulary maps them; else the same).
  virtual int32_t token_of(int32_t column) const { return column; }
  // The instruction set of the probabilities' exp (top_probability).
  virtual Isa isa() const = 0;

 private:
  // One branch from the pending token: `column` first, then the model's top
  // tokens until `stop` ends it or n_max tokens are drafted.
  void chain(int32_t column, DraftStop& stop, int n_max, DraftTree& out);

  DraftStop stop_;      // the first branch: draft_min applies
  DraftStop alt_stop_;  // the others
  std::vector<float> weights_;  // top_probability's exp scratch
  struct Candidate {
    int32_t column;
    float logit;
  };
  std::vector<Candidate> top_;
};

}  // namespace kestrel
