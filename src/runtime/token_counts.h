#pragma once
// How often a corpus uses each token: what a draft vocabulary
// (model/draft_vocab_sidecar.h) is ranked by.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace kestrel {

class Tokenizer;

struct CorpusCount {
  std::vector<uint64_t> counts;  // [n_vocab]: occurrences of each token
  int64_t files = 0;             // files tokenized
  int64_t skipped = 0;           // files left out as binary (a NUL byte in their first 8 KB)
  int64_t bytes = 0;             // bytes tokenized
};

// Tokenizes (no special tokens added or parsed) every file of `paths`, a
// directory standing for every regular file under it in path order, and
// counts the tokens, stopping before the file that would pass max_bytes.
// progress (optional) gets a line now and then. Throws kestrel::Error for a
// path that does not exist, or when nothing was counted.
CorpusCount count_corpus_tokens(const Tokenizer& tokenizer, std::span<const std::string> paths, int64_t max_bytes,
                                const std::function<void(const std::string&)>& progress = {});

}  // namespace kestrel
