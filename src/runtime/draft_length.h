#pragma once
// How many tokens to draft next (speculative decoding, runtime/session.h):
// the number that maximises expected tokens per unit of time, from what this
// sequence has shown so far. Drafts are accepted token by token until the
// first miss, so with a per-token acceptance a (a geometric model, estimated
// from the rounds seen: accepted tokens over accepted + first misses) a draft
// of k tokens yields (1 - a^(k+1)) / (1 - a) tokens, the target's own token
// included. It costs a verification pass of k + 1 tokens, t1 (1 + beta k)
// (t1: a one-token pass; batches cost more per pass on a CPU, where decode is
// not purely memory-bound: beta is measured from the passes seen), plus
// drafting, delta k (a draft model's time per token; n-gram lookup ~0).
// k = 0 is plain decoding (ratio 1): a policy that does not pay on this
// machine and text turns itself off, and is probed again now and then.
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
  // Drafting k tokens took `seconds`; then `accepted` of them were taken.
  // A draft model that drafted nothing (its top token was too unlikely) still
  // spent a pass: `attempted` counts that as a first miss.
  void record_round(int64_t k, double seconds, int64_t accepted, bool attempted = false);
  // The expected tokens per one-token pass's time for a draft of k tokens,
  // under the current estimates (1 for k = 0).
  double gain(int k) const;

 private:
  int max_;
  double hits_ = 4.0, misses_ = 1.0;  // prior: a = 0.8
  double t1_ = 0.0;                   // seconds of a one-token pass (0: none seen)
  double beta_ = 0.1;                 // extra cost per extra token of a pass, relative to t1
  double delta_ = 0.0;                // drafting seconds per drafted token
  int64_t rounds_since_probe_ = 0;
};

}  // namespace kestrel
