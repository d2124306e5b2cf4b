#pragma once
// Test-side references for the samplers, independent of both: the exact
// filtered distribution of llama.cpp's chain computed in double, a chi-square
// goodness-of-fit test with its p-value, and the synthetic logit rows.
#include <cstdint>
#include <string>
#include <vector>

#include "sampling/params.h"

namespace kestrel::test {

// The kept tokens and their final probabilities (summing to 1), in the chain's
// order (logit descending, id ascending).
struct Filtered {
  std::vector<int32_t> ids;
  std::vector<double> prob;
  // How far the set is from changing under float rounding: the smallest
  // |cumulative mass before a boundary token - top_p| (top-p's decisions) and
  // |logit - (max + log min_p)| (min-p's), over the tokens whose fate they
  // decide. +inf when the filter is off.
  double top_p_margin;
  double min_p_margin;
};

// top-k on (logit desc, id asc); top-p on the temperature-1 distribution
// renormalised over the top-k set, keeping a token while the mass before it is
// < p; min-p keeps logit >= max + ln(min_p); each keeps at least the first
// token; then softmax at the temperature. Temperature > 0.
Filtered exact_filtered(const std::vector<float>& logits, const SamplingParams& p);

struct ChiSquare {
  double stat = 0;
  int df = 0;
  double p_value = 1;
  int64_t outside = 0;  // draws of tokens outside the filtered set
  int bins = 0;
};

// Pearson's statistic of `counts` [n_vocab] against n_draws * f.prob, with the
// least likely tokens merged (in probability order) into bins of expected count
// >= 5. Any draw outside the set gives p_value 0.
ChiSquare chi_square(const Filtered& f, const std::vector<int64_t>& counts);

// Regularized upper incomplete gamma Q(a, x): the chi-square survival function
// is Q(df / 2, stat / 2).
double gamma_q(double a, double x);

// Synthetic rows from a fixed seed.
enum class Shape {
  Peaked,  // one dominant token, a few runners-up, a Gaussian bulk
  Flat,    // a narrow Gaussian: thousands of tokens of similar probability
  Zipf,    // p(rank r) ~ r^-1.1, ranks shuffled over the ids
  Ties,    // logits on a coarse grid (long runs of equal logits, some -inf)
  LmLike,  // shaped like a small LM's output: Gaussian bulk sd 3.5, head 5-7 sd above
};
std::vector<float> make_logits(Shape shape, int n_vocab, uint64_t seed);
std::string shape_name(Shape shape);

}  // namespace kestrel::test
