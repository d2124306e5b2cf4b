#pragma once
// Regression detection for `kestrel ab --baseline FILE`: a scoreboard saved as
// JSON (ab writes scoreboard.json beside the markdown) compared with a new
// run, figure by figure, each against its own noise:
//  - speed: each switch row's ratio to its own run's baseline row (so a
//    slower or faster machine moves both), and the baseline rows' tokens/s;
//    moved when the difference exceeds 3 standard errors of it (from the
//    interleaved repetitions' spread) and 5 %: a machine this noisy cannot
//    see less.
//  - peak memory: more than 5 % more.
//  - accuracy (deterministic for one build and CPU): PPL up more than 0.5 %,
//    mean KLD up more than 10 % and 1e-4, top-1 agreement down more than one point.
// Only changes for the worse are regressions; improvements are listed too.
#include <string>
#include <vector>

#include "runtime/scoreboard.h"

namespace kestrel {

std::string scoreboard_json(const Scoreboard& s);
// Throws kestrel::Error naming the file and what is wrong.
Scoreboard scoreboard_from_json(const std::string& text, const std::string& name = "scoreboard");

struct ScoreChange {
  std::string row, figure;  // "kv=q8_0", "tg ratio"
  double before = 0, now = 0;
  bool worse = false;
  std::string text() const;  // "kv=q8_0 tg ratio 1.031 -> 0.912 (worse)"
};

// Rows matched by label; rows only in one board are listed as such (not a regression).
struct ScoreComparison {
  std::vector<ScoreChange> changes;    // beyond noise
  std::vector<std::string> unmatched;  // "attn=sage: not in the baseline"
  bool regressed() const;
};
ScoreComparison compare_scoreboards(const Scoreboard& before, const Scoreboard& now);

}  // namespace kestrel
