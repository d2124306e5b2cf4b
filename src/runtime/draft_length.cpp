#include "runtime/draft_length.h"

#include <algorithm>
#include <cmath>

namespace kestrel {
namespace {

// Exponential forgetting: the estimates follow the text as it changes (a
// quoted block, then free prose) over about 1 / (1 - kKeep) rounds.
constexpr double kKeep = 0.9;
// A policy turned off is tried again after 16 plain rounds, then after twice
// as many each time it stays off, up to 128: a probe costs a draft model's
// catching up and a pass (6-9 % of prose decoding on Qwen2.5-1.5B with the
// 0.5B draft when every 16th round probed).
constexpr int64_t kFirstProbe = 16;
constexpr int64_t kLastProbe = 128;
// Before the passes show it: a pass of n tokens costs 1 + 0.1 (n - 1) one-token passes.
constexpr double kPriorBeta = 0.1;
// The acceptance of predictable text (a draft model on code, n-gram lookup
// on edits: 0.75-0.95 measured): where even it would not pay, nothing will.
constexpr double kProbeAcceptance = 0.9;
// Passes whose sizes showed the slope before could_pay() may say no.
constexpr int64_t kFitsBeforeVerdict = 8;

}  // namespace

DraftLength::DraftLength(int max) : max_(std::max(1, max)), beta_(kPriorBeta), probe_every_(kFirstProbe) {}

void DraftLength::refit() {
  const double mean_n = sn_ / s0_, mean_t = st_ / s0_;
  const double var_n = snn_ / s0_ - mean_n * mean_n;
  if (var_n > 0.25) {  // sizes spread enough to fit the slope
    const double c1 = (snt_ / s0_ - mean_n * mean_t) / var_n;
    const double c0 = mean_t - c1 * mean_n;
    if (c0 + c1 > 0.0 && c1 >= 0.0) {
      t1_ = c0 + c1;
      beta_ = c1 / t1_;
      ++slope_fits_;
      return;
    }
  }
  // The slope is the machine's, not the text's: it outlives the passes that
  // showed it. Back to the prior, a policy turned off for a while (plain
  // passes, one size) would think batches cheap again and draft at a loss
  // (on a 2-core Zen 1, where a pass of n rows costs about 1 + 0.62 (n - 1)
  // one-row passes, the 0.5B draft ran at 0.86-0.97x of plain decoding).
  t1_ = mean_t / (1.0 + beta_ * (mean_n - 1.0));
}

double DraftLength::token_cost() const {
  const double delta = drafted_ > 0.0 ? draft_seconds_ / drafted_ : 0.0;
  return beta_ + (t1_ > 0.0 ? delta / t1_ : 0.0);
}

double DraftLength::gain(int k) const { return gain_at(k, hits_ / (hits_ + misses_)); }

double DraftLength::gain_at(int k, double a) const {
  if (k <= 0) return 1.0;
  const double tokens = a >= 1.0 ? k + 1.0 : (1.0 - std::pow(a, k + 1)) / (1.0 - a);
  return tokens / (1.0 + token_cost() * k);
}

bool DraftLength::could_pay() const {
  // One noisy fit must not turn a policy off for good.
  if (slope_fits_ < kFitsBeforeVerdict) return true;
  for (int k = 1; k <= max_; ++k)
    if (gain_at(k, kProbeAcceptance) > 1.0) return true;
  return false;
}

int DraftLength::next() {
  int best = 0;
  double best_gain = 1.0;
  for (int k = 1; k <= limit_; ++k) {
    const double g = gain(k);
    if (g > best_gain) {
      best = k;
      best_gain = g;
    }
  }
  if (best > 0) {
    probe_every_ = kFirstProbe;
    rounds_since_probe_ = 0;
    return best;
  }
  // No probe where drafting could not pay even on predictable text: what
  // the passes and drafts cost is the machine's, not the text's, and a draft
  // model's probe costs more than its pass (it catches up with every token
  // decoded since its last draft: on a 2-core Zen 1 the 0.5B draft's probes
  // cost 13 % of Qwen2.5-1.5B's chat decoding for 4 drafted tokens).
  if (!could_pay()) return 0;
  if (++rounds_since_probe_ >= probe_every_) {
    rounds_since_probe_ = 0;
    probe_every_ = std::min(kLastProbe, 2 * probe_every_);
    return 1;  // look again: the text may have turned predictable
  }
  return 0;
}

void DraftLength::record_pass(int64_t n, double seconds) {
  if (n < 1 || !(seconds > 0.0)) return;
  const double x = static_cast<double>(n);
  s0_ = kKeep * s0_ + 1.0;
  sn_ = kKeep * sn_ + x;
  snn_ = kKeep * snn_ + x * x;
  st_ = kKeep * st_ + seconds;
  snt_ = kKeep * snt_ + x * seconds;
  refit();
}

void DraftLength::record_round(int64_t k, double seconds, int64_t accepted, bool rejected, bool attempted) {
  if (k <= 0 && !attempted) return;
  // A draft model that drafted nothing was unsure, not wrong: its time counts
  // against the tokens it does draft, the acceptance only sees real drafts.
  if (k > 0) {
    limit_ = std::max(limit_, static_cast<int>(std::min<int64_t>(max_, 2 * k)));
    hits_ = kKeep * hits_ + static_cast<double>(accepted);
    misses_ = kKeep * misses_ + (rejected ? 1.0 : 0.0);
  }
  draft_seconds_ = kKeep * draft_seconds_ + std::max(0.0, seconds);
  drafted_ = kKeep * drafted_ + static_cast<double>(std::max<int64_t>(k, 0));
}

}  // namespace kestrel
