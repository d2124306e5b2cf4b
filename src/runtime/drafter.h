#pragma once
// Drafters for speculative decoding (runtime/speculative.h): each proposes the
// tokens most likely to follow a sequence, cheaply; the target model then
// checks them all in one forward pass. A drafter is deterministic (its draft
// distribution is all on the proposed token), which is what
// Sampler::verify's acceptance rule assumes.
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "switches/engine_config.h"

namespace kestrel {

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Writes up to n_max tokens that may follow `context` (every token of the
  // sequence so far, the last one not yet evaluated by the target) into out;
  // empty when it has no guess.
  virtual void draft(std::span<const int32_t> context, int n_max, std::vector<int32_t>& out) = 0;
};

// llama.cpp's --spec-type spelling of a policy ("none", "draft-simple", "ngram-simple").
std::string_view decode_policy_name(DecodePolicy policy);
// Throws kestrel::Error naming the values it knows.
DecodePolicy parse_decode_policy(std::string_view name);

// The drafter `config.decode` asks for (nullptr for Plain), for a target
// model and the target's context length. A draft model is loaded from
// config.decode.draft_model and runs with the target's engine settings; it
// must have the target's vocabulary (throws naming the first difference).
// Throws for settings that cannot work (a draft as long as the context, an
// n-gram of no tokens).
std::unique_ptr<Drafter> make_drafter(const Model& target, const EngineConfig& config, int64_t n_ctx);

}  // namespace kestrel
