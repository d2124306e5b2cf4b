#pragma once
// Drafters for speculative decoding (runtime/speculative.h): each proposes the
// tokens most likely to follow a sequence, cheaply; the target model then
// checks them all in one forward pass. A drafter is deterministic (its draft
// distribution is all on the proposed token), which is what
// Sampler::verify's acceptance rule assumes.
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/draft_tree.h"
#include "switches/engine_config.h"

namespace kestrel {

// What came of a round: the target's pass over the pending token and the
// draft (n_pass rows, pass_seconds), how many drafted tokens it took, and
// whether it refused one (the walk ended before the end of a branch: for a
// chain, accepted < drafted; a tree's other branches are not misses).
struct DraftRound {
  int64_t n_pass = 1;
  double pass_seconds = 0.0;
  int64_t drafted = 0;
  int64_t accepted = 0;
  bool rejected = false;
};

// --spec-branches at most: each branch past the first takes a KV sequence of its own.
inline constexpr int kMaxDraftBranches = 8;

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Writes up to n_max tokens that may follow `context` (every token of the
  // sequence so far, the last one not yet evaluated by the target) into out;
  // empty when it has no guess (or guessing does not pay).
  // A drafter overrides this or draft_tree(), which it then serves as a
  // chain of the tree's first branch (each default calls the other).
  virtual void draft(std::span<const int32_t> context, int n_max, std::vector<int32_t>& out) {
    draft_tree(context, n_max, 1, tree_);
    out = tree_.tokens;
  }
  // The same with up to n_branches branches (DraftTree): alternatives where
  // the drafter is unsure, each at most n_max tokens deep. A drafter without
  // alternatives drafts a chain (the default).
  virtual void draft_tree(std::span<const int32_t> context, int n_max, int n_branches, DraftTree& out) {
    (void)n_branches;
    draft(context, n_max, chain_);
    out.assign_chain(chain_);
  }
  // Told once the target has evaluated the prompt, before the first draft: a
  // drafter that runs a model evaluates the prompt now, in the prompt phase
  // (as llama.cpp's common_speculative_process does), so that its first draft
  // does not hold up decoding with it (a Q4_0 0.5B draft prefills at about
  // 140 tok/s on a 2-core Zen 1: 2 s of a 300-token prompt).
  virtual void prefill(std::span<const int32_t> prompt) { (void)prompt; }
  // Told after every round, drafted or not (adaptive drafters learn from it).
  virtual void observe(const DraftRound& round) { (void)round; }
  // Of the last draft() call's time, the seconds spent catching up with the
  // sequence (a draft model evaluating the tokens accepted since its last
  // draft, or the prompt; all but the one pass every draft needs): it grows
  // with what was accepted, not with the draft's length, so DraftLength leaves
  // it out of the cost per drafted token.
  virtual double catch_up_seconds() const { return 0.0; }
  // Adaptive draft lengths (DecodeConfig::adaptive): what one more drafted
  // token costs in target passes (DraftLength::token_cost), told before each
  // draft; a drafter that knows its confidence stops below it (DraftStop).
  virtual void set_path_floor(double floor) { (void)floor; }
  // What the target's forward passes must show their hidden states to
  // (EAGLE-3 drafts from them); nullptr: nothing. The hosts (Session,
  // Scheduler) hand it to their engine core.
  virtual HiddenTap* hidden_tap() { return nullptr; }

 private:
  std::vector<int32_t> chain_;
  DraftTree tree_;
};

// When a drafter that scores its tokens stops (ModelDrafter, Eagle3Drafter):
// before a token whose top probability is below p_min, or whose draft so far
// would then be less likely than the path floor: the product of the drafted
// tokens' probabilities estimates the chance that the target takes them all,
// which is what the next token gains, against what it costs (set_path_floor).
// Never before n_min tokens.
class DraftStop {
 public:
  DraftStop(int n_min, float p_min) : n_min_(n_min), p_min_(p_min) {}
  void set_path_floor(double floor) { floor_ = floor; }
  // A new draft begins.
  void start() { path_ = 1.0; }
  // Whether the drafter needs its top probabilities at all.
  bool scores() const { return p_min_ > 0.0f || floor_ > 0.0; }
  // Whether to stop before drafting the n-th token (from 0), of top probability p.
  bool stop(int n, float p) {
    if (n >= n_min_ && (p < p_min_ || path_ * p < floor_)) return true;
    path_ *= p;
    return false;
  }
  // Whether to leave out an alternative to the top token (a draft tree's other
  // branch, DraftTree): of probability p, p_rest once the tokens tried before
  // it failed (what the target's verdict weighs it by, Sampler::verify), and
  // costing `rows` target rows. Otherwise its branch goes on from path p.
  bool stop_alternative(float p, float p_rest, int rows) {
    if (p < p_min_ * p_rest || p < floor_ * rows) return true;
    path_ = p;
    return false;
  }

 private:
  int n_min_;
  float p_min_;
  double floor_ = 0.0;
  double path_ = 1.0;
};

// The softmax probability of logits[top] when it is the largest logit:
// 1 / sum exp(l - max), through the sorting-free sampler's SIMD exp (std::exp
// in double took about 1.5 ms over a 152k vocabulary, at every drafted token).
float top_probability(std::span<const float> logits, int32_t top, Isa isa, std::vector<float>& scratch);

// llama.cpp's --spec-type spelling of a policy ("none", "draft-simple",
// "ngram-simple", "draft-eagle3", and ours: "auto").
std::string_view decode_policy_name(DecodePolicy policy);
// Throws kestrel::Error naming the values it knows.
DecodePolicy parse_decode_policy(std::string_view name);

// The drafters `config.decode` asks for (none for Plain), one per sequence
// (n of them: the server's slots), for a target model and each sequence's
// context length. A draft model is loaded once from config.decode.draft_model
// and shared; each drafter runs it over its own KV cache with the target's
// engine settings. It must have the target's vocabulary (throws naming the
// first difference). Throws for settings that cannot work (a draft as long as
// the context, an n-gram of no tokens).
std::vector<std::unique_ptr<Drafter>> make_drafters(const Model& target, const EngineConfig& config, int64_t n_ctx,
                                                    int n);
// What the decode loops (generate(), each Scheduler slot) feed after the
// pending token: the drafter's guess for `context` (the sequence so far, the
// pending token last), at most min(n_max, draft_max) tokens; empty when
// n_max <= 0 or the guess is shorter than draft_min.
void draft_tokens(Drafter& drafter, const DecodeConfig& config, std::span<const int32_t> context, int64_t n_max,
                  std::vector<int32_t>& out);
// The same for a draft tree (DecodeConfig::draft_branches branches at most),
// each branch at most min(n_max, draft_max) deep; empty when its deepest
// branch is shorter than draft_min.
void draft_tree(Drafter& drafter, const DecodeConfig& config, std::span<const int32_t> context, int64_t n_max,
                DraftTree& out);
// One of them (nullptr for Plain).
std::unique_ptr<Drafter> make_drafter(const Model& target, const EngineConfig& config, int64_t n_ctx);

}  // namespace kestrel
