#include "runtime/chain_drafter.h"

#include <algorithm>
#include <cmath>

#include "sampling/sampler.h"

namespace kestrel {
namespace {

// Keeps the n largest logits, by (logit descending, column ascending): the
// first is argmax's token.
void top_columns(std::span<const float> logits, size_t n, auto& top) {
  top.clear();
  for (size_t c = 0; c < logits.size(); ++c) {
    const float l = logits[c];
    if (top.size() == n && !(l > top.back().logit)) continue;
    auto at = std::find_if(top.begin(), top.end(), [&](const auto& t) { return l > t.logit; });
    top.insert(at, {static_cast<int32_t>(c), l});
    if (top.size() > n) top.pop_back();
  }
}

}  // namespace

void ChainDrafter::draft_tree(std::span<const int32_t> context, int n_max, int n_branches, DraftTree& out) {
  out.clear();
  if (n_max <= 0 || context.empty()) return;
  std::span<const float> logits = start(context);
  if (logits.empty()) return;
  if (n_branches > 1)
    top_columns(logits, static_cast<size_t>(n_branches), top_);
  else
    top_.assign(1, {argmax(logits), 0.0f});
  const bool scores = stop_.scores() || top_.size() > 1;
  const float p_top = scores ? top_probability(logits, top_[0].column, isa(), weights_) : 1.0f;
  stop_.start();
  if (stop_.scores() && stop_.stop(0, p_top)) return;
  chain(top_[0].column, stop_, n_max, out);
  float rest = 1.0f - p_top;  // what the target's verdict leaves to the next alternative
  for (size_t b = 1; b < top_.size(); ++b) {
    const float p = p_top * std::exp(top_[b].logit - top_[0].logit);
    // Two rows: the alternative and the pending token again (its own KV sequence).
    if (alt_stop_.stop_alternative(p, rest, 2)) break;
    rest -= p;
    rewind();
    chain(top_[b].column, alt_stop_, n_max, out);
  }
}

void ChainDrafter::chain(int32_t column, DraftStop& stop, int n_max, DraftTree& out) {
  int32_t parent = -1;
  for (int n = 1;; ++n) {
    const int32_t token = token_of(column);
    parent = out.add(token, parent);
    if (n >= n_max || full()) return;
    std::span<const float> logits = step(token);
    column = argmax(logits);
    if (stop.scores() && stop.stop(n, top_probability(logits, column, isa(), weights_))) return;
  }
}

}  // namespace kestrel
