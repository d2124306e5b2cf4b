#include "runtime/drafter.h"

#include "core/error.h"
#include "runtime/model_drafter.h"
#include "runtime/ngram_drafter.h"

namespace kestrel {

std::string_view decode_policy_name(DecodePolicy policy) {
  switch (policy) {
    case DecodePolicy::Plain:
      return "none";
    case DecodePolicy::DraftModel:
      return "draft-simple";
    case DecodePolicy::NgramSimple:
      return "ngram-simple";
  }
  return "?";
}

DecodePolicy parse_decode_policy(std::string_view name) {
  for (DecodePolicy p : {DecodePolicy::Plain, DecodePolicy::DraftModel, DecodePolicy::NgramSimple})
    if (name == decode_policy_name(p)) return p;
  fail("unknown --spec-type '", name, "' (none, draft-simple, ngram-simple)");
}

std::unique_ptr<Drafter> make_drafter(const Model& target, const EngineConfig& config, int64_t n_ctx) {
  const DecodeConfig& d = config.decode;
  if (d.policy == DecodePolicy::Plain) return nullptr;
  if (d.draft_max < 1) fail("speculative decoding: --spec-draft-n-max must be at least 1, got ", d.draft_max);
  if (d.draft_max >= n_ctx)
    fail("speculative decoding: a draft of ", d.draft_max, " tokens does not fit a context of ", n_ctx,
         " (lower --spec-draft-n-max or raise -c)");
  if (d.draft_min < 0 || d.draft_min > d.draft_max)
    fail("speculative decoding: --spec-draft-n-min ", d.draft_min, " must lie in [0, --spec-draft-n-max ", d.draft_max,
         "]");
  switch (d.policy) {
    case DecodePolicy::NgramSimple:
      return std::make_unique<NgramDrafter>(d.ngram_n, d.ngram_m);
    case DecodePolicy::DraftModel: {
      if (d.draft_model.empty()) fail("--spec-type draft-simple needs a draft model (-md FILE)");
      SessionOptions options;
      options.n_ctx = n_ctx;
      options.engine = config;
      options.engine.decode = {};       // the draft decodes plainly
      options.engine.kv_compress = {};  // and keeps its whole history
      // Its logits only propose: the fastest kernels, whatever their rounding.
      options.engine.matmul.q5_0_decode_panels = true;
      for (DType* t : {&options.engine.k_type, &options.engine.v_type})
        if (*t == DType::CQ2 || *t == DType::CQ1) *t = DType::F16;  // CQ codebooks are the target's
      return std::make_unique<ModelDrafter>(load_model(d.draft_model), target, options, d.draft_min, d.draft_p_min);
    }
    case DecodePolicy::Plain:
      break;
  }
  return nullptr;
}

}  // namespace kestrel
