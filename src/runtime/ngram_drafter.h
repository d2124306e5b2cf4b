#pragma once
// N-gram lookup drafting (llama.cpp's ngram-simple, "prompt lookup
// decoding"): the last n tokens of the sequence are looked for earlier in it,
// latest occurrence first, and the tokens that followed that occurrence are
// the draft. No model: it pays where the output repeats its input (code
// editing, quoting, summaries that copy names).
#include "runtime/drafter.h"

namespace kestrel {

class NgramDrafter : public Drafter {
 public:
  // n: tokens of the looked-up n-gram (>= 1); m: tokens taken after it (>= 1).
  NgramDrafter(int n, int m);
  void draft(std::span<const int32_t> context, int n_max, std::vector<int32_t>& out) override;

 private:
  int n_, m_;
};

}  // namespace kestrel
