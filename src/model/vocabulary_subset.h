#pragma once
// A draft's vocabulary subset (FR-Spec, frequency-ranked speculative
// sampling): a draft model scores only the tokens a corpus uses most, so its
// vocabulary projection reads a fraction of its rows. Qwen2.5-0.5B's
// 152k-row head is 37 % of the bytes its decode step reads; its 32k most
// frequent tokens cover nearly all of what a code or prose corpus writes.
// Drafts stay lossless: the target verifies every drafted token, and a
// drafter's distribution is all on the token it proposes either way.
#include <cstdint>
#include <memory>
#include <vector>

#include "ops/weight.h"

namespace kestrel {

class Model;

struct VocabularySubset {
  std::vector<int32_t> ids;    // the token of each logit column (the head's rows), ascending
  std::vector<uint8_t> bytes;  // the head's rows as the model stores them
  Weight head;                 // ids.size() rows of the model's vocabulary projection, over bytes
};

// The rows of `model`'s vocabulary projection for `ids` (any order; kept
// ascending). Throws kestrel::Error for an architecture that does not expose
// its projection, an empty list, an id outside the vocabulary or a repeated one.
std::shared_ptr<const VocabularySubset> make_vocabulary_subset(const Model& model, std::vector<int32_t> ids);

}  // namespace kestrel
