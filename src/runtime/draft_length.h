#pragma once
// How many tokens to draft next (speculative decoding, runtime/session.h):
// the number that maximises expected tokens per unit of time, from what this
// sequence has shown so far. Drafts are accepted token by token until the
// first miss, so with a per-token acceptance a (a geometric model, estimated
// from the rounds seen: accepted tokens over accepted + first misses) a draft
// of k tokens yields (1 - a^(k+1)) / (1 - a) tokens, the target's own token
// included. It costs a verification pass of k + 1 tokens, t1 (1 + beta k)
// (t1: a one-token pass; batches cost more per pass on a CPU, where decode is
// not purely memory-bound: beta is measured from the passes seen, and kept
// while the passes have one size), plus
// drafting, delta k (a draft model's time per token; n-gram lookup ~0).
// k = 0 is plain decoding (ratio 1): a policy that does not pay on this
// machine and text turns itself off, and is probed again now and then (after
// 16 rounds, then 32, ... up to 128 while it stays off), unless its costs
// alone rule it out (could_pay).
#include <cstdint>

namespace kestrel {

class DraftLength {
 public:
  // max: --spec-draft-n-max.
  explicit DraftLength(int max);
  // The draft length to ask for now (0: decode plainly this round).
  int next();
  // A verification (or plain) pass of n tokens took `seconds`.
  void record_pass(int64_t n, double seconds);
  // Drafting k tokens took `seconds`; then `accepted` of them were taken,
  // and the target refused the next one (`rejected`; a draft tree's k counts
  // its alternatives, which are no misses when another branch is taken).
  // A draft model that drafted nothing (its top token was too unlikely) still
  // spent its time (`attempted`): it raises the cost per drafted token.
  void record_round(int64_t k, double seconds, int64_t accepted, bool rejected, bool attempted = false);
  // The expected tokens per one-token pass's time for a draft of k tokens,
  // under the current estimates (1 for k = 0).
  double gain(int k) const;
  // Whether some draft length would pay at a high acceptance (0.9) with the
  // costs measured (true until 8 passes have shown the slope): when none
  // would, a policy turned off is not probed again.
  bool could_pay() const;
  // What one more drafted token costs, in one-token passes: beta + delta / t1.
  // A drafter that knows its confidence stops where the chance that the
  // target takes its whole draft falls below it (DraftStop).
  double token_cost() const;

 private:
  int max_;
  // Slow start: drafts at most twice as long as the longest so far (1 at
  // first), so that the first rounds, drafted before the passes have shown
  // what a batch costs, stay short (the prior alone drafts 6 tokens: a
  // 7-row verification costs 4.7 passes where a row costs 0.62 of one, as on
  // a 2-core Zen 1).
  int limit_ = 1;
  // The line through the pass times, after each pass: t1_ and beta_, or t1_
  // alone under the last beta_ when the passes seen have (nearly) one size.
  void refit();
  double gain_at(int k, double a) const;  // gain() at acceptance a

  double t1_ = 0.0;                   // a one-token pass's seconds (0: none seen)
  double beta_;                       // the last slope fitted (the prior before any)
  int64_t slope_fits_ = 0;            // passes after which the slope was fitted
  double hits_ = 4.0, misses_ = 1.0;  // prior: a = 0.8
  // Pass times, forgetting old ones: sums of 1, n, n^2, t, n t.
  double s0_ = 0.0, sn_ = 0.0, snn_ = 0.0, st_ = 0.0, snt_ = 0.0;
  double draft_seconds_ = 0.0, drafted_ = 0.0;  // drafting, forgetting old rounds
  int64_t rounds_since_probe_ = 0;
  int64_t probe_every_;  // plain rounds between probes (doubling while drafting stays off)
};

}  // namespace kestrel
