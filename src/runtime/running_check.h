#pragma once
// The accuracy guard's running check in `serve`: one decode step in `every`
// (over all slots) is recomputed on the exact path and compared with the
// logits the slot sampled from (runtime/accuracy_probe.h compare_logits).
// The exact path is a Session of its own that follows one request at a time:
// at each check it is given the request's tokens so far and evaluates only
// those it has not seen (its cached prefix is reused), so following a request
// costs one prompt-speed pass over it, not a decode step per token. When the
// followed request ends, the next check starts following another: one request
// in `follow_every` (the others are never recomputed), which bounds the cost
// for a single client to a 1/follow_every share of the prompt-speed passes.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/accuracy_budget.h"
#include "runtime/session.h"

namespace kestrel {

struct RunningCheckOptions {
  int every = 0;        // decode steps per check, over all slots; 0: off
  int min_checks = 16;  // checks before the running figures are judged
  int follow_every = 4;  // requests per followed one
  AccuracyBudget budget;
  EngineConfig exact;    // the exact path's configuration (the lossless settings)
  int64_t n_ctx = 2048;  // the longest request followed (a slot's context)
};

class RunningCheck {
 public:
  RunningCheck(const Model& model, const RunningCheckOptions& o);

  // A generating slot's decode row: `history` is every token of the request
  // the row's logits follow (prompt and generated, the last one just fed).
  // `step_seconds`: the engine's forward time for this row when it was the
  // only one in its batch (a decode step of this request alone); a check of
  // such a row also times the exact path's decode of the same token at the
  // same position, for the running speed-up. Returns true when checked.
  bool observe(uint64_t request, std::span<const int32_t> history, std::span<const float> logits,
               std::optional<double> step_seconds = std::nullopt);
  // The request ended: the exact path stops following it.
  void end(uint64_t request);

  struct Figures {
    int64_t checks = 0;
    double kld = 0.0;   // mean over the checks
    double top1 = 1.0;  // share of checks whose argmax agreed
    // Checks of single-row steps, timed on both paths; speed-up = the exact
    // path's decode time over the configuration's, summed over them (0: none).
    int64_t timed = 0;
    double speedup = 0.0;
  };
  Figures figures() const;
  // "" while within the budget (or fewer than min_checks); else what is broken.
  std::string over_budget() const;
  // Forgets the figures (the configuration changed).
  void reset();

 private:
  RunningCheckOptions o_;
  Session exact_;
  uint64_t following_ = 0;  // 0: none
  std::vector<uint64_t> passed_over_;  // requests not followed (until they end)
  uint64_t candidates_ = 0;            // requests considered for following
  int64_t steps_ = 0;
  bool due_ = false;
  int64_t checks_ = 0, same_ = 0;
  double kld_sum_ = 0.0;
  int64_t timed_ = 0;
  double exact_seconds_ = 0.0, running_seconds_ = 0.0;
};

}  // namespace kestrel
