#include "runtime/draft_length.h"

#include <algorithm>
#include <cmath>

namespace kestrel {
namespace {

// Exponential forgetting: the estimates follow the text as it changes (a
// quoted block, then free prose) over about 1 / (1 - kKeep) rounds.
constexpr double kKeep = 0.9;
// A policy turned off is tried again after this many plain rounds.
constexpr int64_t kProbeEvery = 16;

double blend(double old, double now, double keep) { return keep * old + (1.0 - keep) * now; }

}  // namespace

DraftLength::DraftLength(int max) : max_(std::max(1, max)) {}

double DraftLength::gain(int k) const {
  if (k <= 0) return 1.0;
  const double a = hits_ / (hits_ + misses_);
  const double tokens = a >= 1.0 ? k + 1.0 : (1.0 - std::pow(a, k + 1)) / (1.0 - a);
  const double draft = t1_ > 0.0 ? delta_ / t1_ : 0.0;
  return tokens / (1.0 + (beta_ + draft) * k);
}

int DraftLength::next() {
  int best = 0;
  double best_gain = 1.0;
  for (int k = 1; k <= max_; ++k) {
    const double g = gain(k);
    if (g > best_gain) {
      best = k;
      best_gain = g;
    }
  }
  if (best == 0 && ++rounds_since_probe_ >= kProbeEvery) {
    rounds_since_probe_ = 0;
    return 1;  // look again: the text may have turned predictable
  }
  return best;
}

void DraftLength::record_pass(int64_t n, double seconds) {
  if (n < 1 || !(seconds > 0.0)) return;
  if (n == 1) {
    t1_ = t1_ > 0.0 ? blend(t1_, seconds, kKeep) : seconds;
    return;
  }
  if (t1_ <= 0.0) return;  // no one-token pass yet to compare with
  const double beta = std::max(0.0, (seconds / t1_ - 1.0) / static_cast<double>(n - 1));
  beta_ = blend(beta_, beta, kKeep);
}

void DraftLength::record_round(int64_t k, double seconds, int64_t accepted, bool attempted) {
  if (k <= 0 && !attempted) return;
  hits_ = kKeep * hits_ + static_cast<double>(accepted);
  misses_ = kKeep * misses_ + (accepted < k || k <= 0 ? 1.0 : 0.0);
  delta_ = blend(delta_, std::max(0.0, seconds) / static_cast<double>(std::max<int64_t>(k, 1)), kKeep);
}

}  // namespace kestrel
