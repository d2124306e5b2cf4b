#include "runtime/drafter.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "model/draft_vocab_sidecar.h"
#include "platform/dispatch.h"
#include "runtime/draft_length.h"
#include "runtime/eagle3_drafter.h"
#include "runtime/engine_core.h"
#include "runtime/model_drafter.h"
#include "runtime/ngram_drafter.h"
#include "sampling/sortfree_kernels.h"

namespace kestrel {
namespace {

// A drafter whose draft lengths a DraftLength chooses from what the rounds
// showed (DecodeConfig::adaptive). `costly`: drafting runs a model, so a draft
// of nothing still cost a pass.
class TunedDrafter : public Drafter {
 public:
  TunedDrafter(std::unique_ptr<Drafter> inner, int max, bool costly)
      : inner_(std::move(inner)), length_(max), costly_(costly) {}
  void draft_tree(std::span<const int32_t> context, int n_max, int n_branches, DraftTree& out) override {
    out.clear();
    const int k = std::min(n_max, length_.next());
    attempted_ = k > 0;
    seconds_ = 0.0;
    if (k <= 0) return;
    inner_->set_path_floor(length_.token_cost());
    const auto t0 = std::chrono::steady_clock::now();
    inner_->draft_tree(context, k, n_branches, out);
    seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - inner_->catch_up_seconds();
  }
  HiddenTap* hidden_tap() override { return inner_->hidden_tap(); }
  void prefill(std::span<const int32_t> prompt) override { inner_->prefill(prompt); }
  void observe(const DraftRound& r) override {
    length_.record_pass(r.n_pass, r.pass_seconds);
    if (attempted_) length_.record_round(r.drafted, seconds_, r.accepted, r.rejected, costly_);
    attempted_ = false;
  }
  // The pass was another drafter's: its cost still teaches t1 and beta.
  void observe_pass_only(const DraftRound& r) {
    length_.record_pass(r.n_pass, r.pass_seconds);
    attempted_ = false;
  }

 private:
  std::unique_ptr<Drafter> inner_;
  DraftLength length_;
  bool costly_;
  bool attempted_ = false;
  double seconds_ = 0.0;
};

// "auto": n-gram lookup first (free, and right where the text repeats), the
// EAGLE-3 head or draft model where it finds nothing; each with its own draft lengths.
class AutoDrafter : public Drafter {
 public:
  AutoDrafter(std::unique_ptr<TunedDrafter> ngram, std::unique_ptr<TunedDrafter> model)
      : ngram_(std::move(ngram)), model_(std::move(model)) {}
  HiddenTap* hidden_tap() override { return model_ ? model_->hidden_tap() : nullptr; }
  void prefill(std::span<const int32_t> prompt) override {
    if (model_) model_->prefill(prompt);
  }
  void draft_tree(std::span<const int32_t> context, int n_max, int n_branches, DraftTree& out) override {
    last_ = ngram_.get();
    ngram_->draft_tree(context, n_max, n_branches, out);
    if (!out.empty() || !model_) return;
    last_ = model_.get();
    model_->draft_tree(context, n_max, n_branches, out);
  }
  void observe(const DraftRound& r) override {
    for (TunedDrafter* d : {ngram_.get(), model_.get()}) {
      if (!d) continue;
      if (d == last_)
        d->observe(r);
      else
        d->observe_pass_only(r);
    }
    last_ = nullptr;
  }

 private:
  std::unique_ptr<TunedDrafter> ngram_, model_;
  TunedDrafter* last_ = nullptr;
};

}  // namespace

float top_probability(std::span<const float> logits, int32_t top, Isa isa, std::vector<float>& scratch) {
  scratch.resize(logits.size());
  const double sum = sampling::sortfree_kernels(isa).exp_weights(
      logits.data(), static_cast<int64_t>(logits.size()), logits[static_cast<size_t>(top)], 1.0f, scratch.data());
  return static_cast<float>(1.0 / sum);
}

std::string_view decode_policy_name(DecodePolicy policy) {
  switch (policy) {
    case DecodePolicy::Plain:
      return "none";
    case DecodePolicy::DraftModel:
      return "draft-simple";
    case DecodePolicy::NgramSimple:
      return "ngram-simple";
    case DecodePolicy::Auto:
      return "auto";
    case DecodePolicy::Eagle3:
      return "draft-eagle3";
    case DecodePolicy::QSpec:
      return "qspec";
  }
  return "?";
}

DecodePolicy parse_decode_policy(std::string_view name) {
  for (DecodePolicy p : {DecodePolicy::Plain, DecodePolicy::DraftModel, DecodePolicy::NgramSimple, DecodePolicy::Auto,
                         DecodePolicy::Eagle3, DecodePolicy::QSpec})
    if (name == decode_policy_name(p)) return p;
  fail("unknown --spec-type '", name, "' (none, draft-simple, draft-eagle3, ngram-simple, auto, qspec)");
}

std::vector<std::unique_ptr<Drafter>> make_drafters(const Model& target, const EngineConfig& config, int64_t n_ctx,
                                                    int n) {
  std::vector<std::unique_ptr<Drafter>> out;
  const DecodeConfig& d = config.decode;
  if (d.policy == DecodePolicy::Plain) return out;
  if (d.draft_max < 1) fail("speculative decoding: --spec-draft-n-max must be at least 1, got ", d.draft_max);
  if (d.draft_max >= n_ctx)
    fail("speculative decoding: a draft of ", d.draft_max, " tokens does not fit a context of ", n_ctx,
         " (lower --spec-draft-n-max or raise -c)");
  if (d.draft_min < 0 || d.draft_min > d.draft_max)
    fail("speculative decoding: --spec-draft-n-min ", d.draft_min, " must lie in [0, --spec-draft-n-max ", d.draft_max,
         "]");
  // A budget evicts after every decode step: after every verification pass
  // here, so the cache, and the greedy text, would differ from plain decoding's.
  if (config.kv_compress.budget > 0)
    fail(
        "speculative decoding does not run under a KV budget (--kv-budget / kv_budget): it evicts after every pass "
        "instead of every token, so the output would not be plain decoding's; drop one of them");
  if (d.draft_branches < 1 || d.draft_branches > kMaxDraftBranches)
    fail("speculative decoding: --spec-branches ", d.draft_branches, " must lie in [1, ", kMaxDraftBranches, "]");
  if (d.policy == DecodePolicy::DraftModel && d.draft_model.empty())
    fail("--spec-type draft-simple needs a draft model (-md FILE)");
  if (d.policy == DecodePolicy::Eagle3 && d.eagle3_head.empty())
    fail("--spec-type draft-eagle3 needs an EAGLE-3 head (-md FILE or --spec-eagle3-head FILE)");
  // The drafter that runs a model: an EAGLE-3 head (draft-eagle3, or auto
  // given one), else a draft model (draft-simple, or auto given one).
  const bool uses_head = d.policy == DecodePolicy::Eagle3 || (d.policy == DecodePolicy::Auto && !d.eagle3_head.empty());
  const bool qspec = d.policy == DecodePolicy::QSpec;
  if (qspec && !d.draft_model.empty())
    fail("--spec-type qspec drafts with the model's own weights; it takes no draft model (-md)");
  if (qspec) check_four_bit_activations(target);
  if (qspec && config.matmul.activation_bits == 4)
    fail(
        "--spec-type qspec drafts with 4-bit activations and verifies with the model's; act=a4 leaves nothing to "
        "verify");
  const bool uses_model = qspec || (!uses_head && (d.policy == DecodePolicy::DraftModel ||
                                                   (d.policy == DecodePolicy::Auto && !d.draft_model.empty())));
  if (d.draft_branches > 1 && !uses_head && !uses_model)
    fail(
        "--spec-branches applies to drafters that run a model (draft-simple, draft-eagle3, qspec, auto with -md), "
        "not to --spec-type ",
        decode_policy_name(d.policy));
  if (!d.draft_vocab.empty() && !uses_model)
    fail("--spec-draft-vocab applies to a draft model (-md with draft-simple or auto) or qspec, not to --spec-type ",
         decode_policy_name(d.policy), uses_head ? " with an EAGLE-3 head (it has its own draft vocabulary)" : "");
  std::shared_ptr<const Model> draft;
  std::shared_ptr<const VocabularySubset> vocabulary;  // one for the n drafters, like the draft model
  std::shared_ptr<const Eagle3Head> head;
  std::shared_ptr<TargetFeatures> features;  // one store for the n sequences
  SessionOptions options;
  if (uses_head) {
    head = std::make_shared<const Eagle3Head>(d.eagle3_head, target);
    // A session's draft tree verifies its branches in sequences 0..branches-1.
    features = std::make_shared<TargetFeatures>(head->config().target_layers, target.config().n_embd, n_ctx,
                                                std::max(n, d.draft_branches), runnable_isa(config.isa));
  }
  if (uses_model) {
    options.n_ctx = n_ctx;
    options.engine = config;
    options.engine.decode = {};       // the draft decodes plainly
    options.engine.kv_compress = {};  // and keeps its whole history
    options.engine.teal = {};         // with its own dense weights (the thresholds are the target's)
    for (DType* t : {&options.engine.k_type, &options.engine.v_type})
      if (is_cq(*t)) *t = DType::F16;  // CQ codebooks are the target's
    if (qspec) {
      // The target's weights, not a copy (the aliasing constructor owns nothing), at 4-bit activations.
      draft = std::shared_ptr<const Model>(std::shared_ptr<const Model>{}, &target);
      options.engine.matmul.activation_bits = 4;
    } else {
      draft = load_model(d.draft_model);
      check_same_vocabulary(*draft, target);
    }
    if (!d.draft_vocab.empty()) {
      const TokenRanking ranking = load_token_ranking(d.draft_vocab, draft->tokenizer());
      vocabulary = make_vocabulary_subset(*draft, draft_vocabulary(ranking, draft->tokenizer(), d.draft_vocab_n));
    }
  }
  auto ngram = [&] { return std::make_unique<NgramDrafter>(d.ngram_n, d.ngram_m); };
  auto costly = [&](int seq) -> std::unique_ptr<Drafter> {
    if (uses_head)
      return std::make_unique<Eagle3Drafter>(head, features, seq, config, n_ctx, d.draft_min, d.resolved_p_min());
    return std::make_unique<ModelDrafter>(draft, options, d.draft_min, d.resolved_p_min(), vocabulary);
  };
  auto tuned = [&](std::unique_ptr<Drafter> inner, bool is_costly) {
    return std::make_unique<TunedDrafter>(std::move(inner), d.draft_max, is_costly);
  };
  for (int i = 0; i < n; ++i) {
    switch (d.policy) {
      case DecodePolicy::NgramSimple:
        out.push_back(d.adaptive ? tuned(ngram(), false) : std::unique_ptr<Drafter>(ngram()));
        break;
      case DecodePolicy::DraftModel:
      case DecodePolicy::Eagle3:
      case DecodePolicy::QSpec:
        out.push_back(d.adaptive ? tuned(costly(i), true) : costly(i));
        break;
      case DecodePolicy::Auto:  // always adaptive: it has to know when a draft model does not pay
        out.push_back(std::make_unique<AutoDrafter>(tuned(ngram(), false),
                                                    uses_head || uses_model ? tuned(costly(i), true) : nullptr));
        break;
      case DecodePolicy::Plain:
        break;
    }
  }
  return out;
}

void draft_tokens(Drafter& drafter, const DecodeConfig& config, std::span<const int32_t> context, int64_t n_max,
                  std::vector<int32_t>& out) {
  out.clear();
  n_max = std::min<int64_t>(n_max, config.draft_max);
  if (n_max <= 0) return;
  drafter.draft(context, static_cast<int>(n_max), out);
  if (static_cast<int>(out.size()) < config.draft_min || static_cast<int64_t>(out.size()) > n_max) out.clear();
}

void draft_tree(Drafter& drafter, const DecodeConfig& config, std::span<const int32_t> context, int64_t n_max,
                DraftTree& out) {
  out.clear();
  n_max = std::min<int64_t>(n_max, config.draft_max);
  if (n_max <= 0) return;
  drafter.draft_tree(context, static_cast<int>(n_max), config.draft_branches, out);
  std::vector<int32_t> leaves;
  const int64_t deepest = out.leaves(leaves);
  if (deepest < config.draft_min || deepest > n_max || static_cast<int64_t>(leaves.size()) > config.draft_branches)
    out.clear();
}

std::unique_ptr<Drafter> make_drafter(const Model& target, const EngineConfig& config, int64_t n_ctx) {
  auto drafters = make_drafters(target, config, n_ctx, 1);
  return drafters.empty() ? nullptr : std::move(drafters.front());
}

}  // namespace kestrel
