#pragma once
// The draft-vocabulary sidecar: a vocabulary's tokens ranked by how often a
// corpus uses them, written by `kestrel calibrate draft-vocab` and read under
// --spec-draft-vocab FILE, which keeps a draft model's most frequent
// --spec-draft-vocab-n tokens (model/vocabulary_subset.h).
//
// It belongs to a vocabulary, not to one model file: a draft and its target
// share it, as do two quantizations of one model.
//
// Layout (GGUF v3, general.architecture = "kestrel-draft-vocab"):
//   kestrel.draft_vocab.version        u32, kDraftVocabVersion
//   kestrel.draft_vocab.n_vocab        u32, the vocabulary's size
//   kestrel.draft_vocab.vocab_hash     u64, vocabulary_hash of its token texts
//   kestrel.draft_vocab.corpus_tokens  u64, tokens counted
//   draft_vocab.ids     I32 [n]: every token the corpus used, most frequent first
//                       (ties: lower id first)
//   draft_vocab.counts  I32 [n]: each one's count (saturating at 2^31 - 1)
#include <cstdint>
#include <string>
#include <vector>

namespace kestrel {

namespace gguf {
class Writer;
}
class Tokenizer;

inline constexpr uint32_t kDraftVocabVersion = 1;

struct TokenRanking {
  int32_t n_vocab = 0;
  uint64_t vocab_hash = 0;
  uint64_t corpus_tokens = 0;
  std::vector<int32_t> ids;     // most frequent first
  std::vector<int32_t> counts;  // ids' counts, not increasing
};

// FNV-1a of every token's text and its length, in id order: two tokenizers
// with the same hash propose the same token under the same id.
uint64_t vocabulary_hash(const Tokenizer& tokenizer);

// The ranking of counts[id] (the ids counted at least once), for `tokenizer`.
TokenRanking rank_tokens(const Tokenizer& tokenizer, const std::vector<uint64_t>& counts);

gguf::Writer draft_vocab_writer(const TokenRanking& ranking);  // tests alter it to make bad files
void save_token_ranking(const std::string& path, const TokenRanking& ranking);

// Reads a sidecar and checks it against `tokenizer`. Throws kestrel::Error
// naming the file and what is wrong: not a GGUF or truncated, not a
// draft-vocabulary sidecar, an unknown version, made for another vocabulary,
// a missing or mis-shaped tensor, an id outside the vocabulary or repeated,
// counts that increase.
TokenRanking load_token_ranking(const std::string& path, const Tokenizer& tokenizer);

// The first n ranked ids (all of them if fewer) and every end-of-generation
// token, so that a draft can propose the end. Throws for n < 1.
std::vector<int32_t> draft_vocabulary(const TokenRanking& ranking, const Tokenizer& tokenizer, int64_t n);

}  // namespace kestrel
