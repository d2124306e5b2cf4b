#include "runtime/model_drafter.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace kestrel {

void check_same_vocabulary(const Model& draft, const Model& target) {
  const Tokenizer& d = draft.tokenizer();
  const Tokenizer& t = target.tokenizer();
  if (d.n_vocab() != t.n_vocab())
    fail("draft model ", draft.path(), " has ", d.n_vocab(), " tokens, the target ", target.path(), " has ",
         t.n_vocab(), ": a draft needs the target's vocabulary");
  for (int32_t id = 0; id < t.n_vocab(); ++id)
    if (d.token_text(id) != t.token_text(id))
      fail("draft model ", draft.path(), " has another vocabulary than the target ", target.path(), ": token ", id,
           " is '", d.token_text(id), "' there and '", t.token_text(id), "' in the target");
}

namespace {

SessionOptions with_head(SessionOptions options, const VocabularySubset* vocabulary) {
  options.output_head = vocabulary != nullptr ? &vocabulary->head : nullptr;
  return options;
}

}  // namespace

ModelDrafter::ModelDrafter(std::shared_ptr<const Model> draft, const SessionOptions& options, int n_min, float p_min,
                           std::shared_ptr<const VocabularySubset> vocabulary)
    : ChainDrafter(n_min, p_min),
      model_(std::move(draft)),
      vocabulary_(std::move(vocabulary)),
      session_(*model_, with_head(options, vocabulary_.get())) {}

void ModelDrafter::prefill(std::span<const int32_t> prompt) {
  // The first start() then keeps this cached prefix and evaluates the pending token alone.
  session_.set_history(prompt);
}

std::span<const float> ModelDrafter::start(std::span<const int32_t> context) {
  // The tokens evaluated now are what the target accepted since the last
  // draft (or the prompt). The last of them is the pass every draft needs;
  // the others are the catch-up (see Drafter::catch_up_seconds).
  const auto t0 = std::chrono::steady_clock::now();
  std::span<const float> logits = session_.set_history(context);
  const double n_eval = static_cast<double>(std::max<int64_t>(1, session_.last_evaluated()));
  catch_up_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * (n_eval - 1.0) / n_eval;
  synced_ = session_.n_past();
  return logits;
}

}  // namespace kestrel
