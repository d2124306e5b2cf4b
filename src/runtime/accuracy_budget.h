#pragma once
// The accuracy budget a user states once (--max-kld, --max-ppl-increase,
// --min-top1) and the figures a lossy configuration is held to: its output
// distributions against the exact path's on the same tokens.
#include <optional>
#include <string>
#include <string_view>

namespace kestrel {

// How far a configuration's next-token distributions moved from the exact
// path's, over the same teacher-forced positions.
struct AccuracyFigures {
  double kld = 0.0;           // mean KL(exact || this), nats, over the full vocabulary
  double top1 = 1.0;          // share of positions whose argmax equals the exact path's
  double ppl_increase = 0.0;  // PPL(this) / PPL(exact) - 1 on the text's own next tokens
  int positions = 0;
};

struct AccuracyBudget {
  std::optional<double> max_kld;
  std::optional<double> max_ppl_increase;  // a fraction: 0.01 is 1 %
  std::optional<double> min_top1;          // a fraction: 0.97
  bool any() const { return max_kld || max_ppl_increase || min_top1; }
  bool operator==(const AccuracyBudget&) const = default;
};

// --max-kld: a non-negative number of nats ("0.01").
double parse_max_kld(std::string_view text);
// --max-ppl-increase: percent, the sign optional ("1%" and "1" are 1 %).
double parse_max_ppl_increase(std::string_view text);
// --min-top1: a share in [0, 1] ("0.97"), or percent with the sign ("97%").
double parse_min_top1(std::string_view text);

// "" when the figures are within every limit the budget sets; otherwise each
// broken limit with the figure ("KLD 0.031 > 0.01; top-1 91.2 % < 97 %").
std::string over_budget(const AccuracyFigures& f, const AccuracyBudget& b);
// The largest share of a limit the figures use (1 = at a limit; ranks which
// switch to give up first). 0 for an empty budget.
double budget_use(const AccuracyFigures& f, const AccuracyBudget& b);
// "KLD 0.0123, top-1 97.1 %, PPL +0.84 % (254 positions)"
std::string describe(const AccuracyFigures& f);
// "KLD <= 0.01, PPL <= +1 %, top-1 >= 97 %"
std::string describe(const AccuracyBudget& b);

}  // namespace kestrel
