#include "model/draft_vocab_sidecar.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/hash.h"
#include "gguf/gguf.h"
#include "gguf/sidecar.h"
#include "tokenizer/tokenizer.h"

namespace kestrel {
namespace {

constexpr const char* kArchitecture = "kestrel-draft-vocab";

}  // namespace

uint64_t vocabulary_hash(const Tokenizer& tokenizer) {
  Fnv1a h;
  for (int32_t id = 0; id < tokenizer.n_vocab(); ++id) {
    const std::string& text = tokenizer.token_text(id);
    h.u64(text.size());
    h.bytes(text.data(), text.size());
  }
  return h.h;
}

TokenRanking rank_tokens(const Tokenizer& tokenizer, const std::vector<uint64_t>& counts) {
  if (static_cast<int64_t>(counts.size()) != tokenizer.n_vocab())
    fail("rank_tokens: ", counts.size(), " counts for a vocabulary of ", tokenizer.n_vocab());
  TokenRanking r;
  r.n_vocab = tokenizer.n_vocab();
  r.vocab_hash = vocabulary_hash(tokenizer);
  for (int32_t id = 0; id < r.n_vocab; ++id)
    if (counts[id] > 0) r.ids.push_back(id);
  std::stable_sort(r.ids.begin(), r.ids.end(), [&](int32_t a, int32_t b) { return counts[a] > counts[b]; });
  constexpr uint64_t kMax = std::numeric_limits<int32_t>::max();
  for (int32_t id : r.ids) {
    r.corpus_tokens += counts[id];
    r.counts.push_back(static_cast<int32_t>(std::min(counts[id], kMax)));
  }
  return r;
}

gguf::Writer draft_vocab_writer(const TokenRanking& r) {
  gguf::Writer w;
  w.set_string("general.architecture", kArchitecture);
  w.set_u32("kestrel.draft_vocab.version", kDraftVocabVersion);
  w.set_u32("kestrel.draft_vocab.n_vocab", static_cast<uint32_t>(r.n_vocab));
  w.set_u64("kestrel.draft_vocab.vocab_hash", r.vocab_hash);
  w.set_u64("kestrel.draft_vocab.corpus_tokens", r.corpus_tokens);
  const auto n = static_cast<int64_t>(r.ids.size());
  w.add_tensor("draft_vocab.ids", DType::I32, {n}, gguf::bytes_of<int32_t>(r.ids));
  w.add_tensor("draft_vocab.counts", DType::I32, {n}, gguf::bytes_of<int32_t>(r.counts));
  return w;
}

void save_token_ranking(const std::string& path, const TokenRanking& r) { draft_vocab_writer(r).write(path); }

TokenRanking load_token_ranking(const std::string& path, const Tokenizer& tokenizer) {
  const std::string where = "draft-vocabulary sidecar " + path;
  const gguf::File f = gguf::open_sidecar(path, "draft-vocabulary", kArchitecture);
  TokenRanking r;
  try {
    const uint64_t version = f.require_u64("kestrel.draft_vocab.version");
    if (version != kDraftVocabVersion)
      fail("unknown version ", version, " (this build reads version ", kDraftVocabVersion, ")");
    r.n_vocab = static_cast<int32_t>(f.require_u64("kestrel.draft_vocab.n_vocab"));
    r.vocab_hash = f.require_u64("kestrel.draft_vocab.vocab_hash");
    r.corpus_tokens = f.require_u64("kestrel.draft_vocab.corpus_tokens");
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  const uint64_t model_hash = vocabulary_hash(tokenizer);
  if (r.n_vocab != tokenizer.n_vocab() || r.vocab_hash != model_hash)
    fail(where, " was made for another vocabulary (", r.n_vocab, " tokens, hash ", r.vocab_hash, "; the model has ",
         tokenizer.n_vocab(), " tokens, hash ", model_hash, "): run `kestrel calibrate draft-vocab` for this model");
  const gguf::TensorInfo* ids = f.find_tensor("draft_vocab.ids");
  if (ids == nullptr) fail(where, ": missing tensor draft_vocab.ids");
  if (ids->type != DType::I32 || ids->ne.size() != 1 || ids->ne[0] < 1)
    fail(where, ": tensor draft_vocab.ids is ", dtype_name(ids->type), " ", gguf::shape_text(ids->ne),
         ", expected i32 [n >= 1]");
  const int64_t n = ids->ne[0];
  const gguf::TensorInfo* counts = f.find_tensor("draft_vocab.counts");
  if (counts == nullptr) fail(where, ": missing tensor draft_vocab.counts");
  if (counts->type != DType::I32 || counts->ne != ids->ne)
    fail(where, ": tensor draft_vocab.counts is ", dtype_name(counts->type), " ", gguf::shape_text(counts->ne),
         ", expected i32 ", gguf::shape_text(ids->ne));
  r.ids.resize(static_cast<size_t>(n));
  r.counts.resize(static_cast<size_t>(n));
  std::memcpy(r.ids.data(), ids->data, r.ids.size() * sizeof(int32_t));
  std::memcpy(r.counts.data(), counts->data, r.counts.size() * sizeof(int32_t));
  std::vector<bool> seen(static_cast<size_t>(r.n_vocab), false);
  for (size_t i = 0; i < r.ids.size(); ++i) {
    const int32_t id = r.ids[i];
    if (id < 0 || id >= r.n_vocab) fail(where, ": token ", id, " (rank ", i, ") is outside the vocabulary");
    if (seen[static_cast<size_t>(id)]) fail(where, ": token ", id, " is ranked twice");
    seen[static_cast<size_t>(id)] = true;
    if (r.counts[i] < 1 || (i > 0 && r.counts[i] > r.counts[i - 1]))
      fail(where, ": count ", r.counts[i], " at rank ", i, " is not positive or exceeds the one before it");
  }
  return r;
}

std::vector<int32_t> draft_vocabulary(const TokenRanking& ranking, const Tokenizer& tokenizer, int64_t n) {
  if (n < 1) fail("--spec-draft-vocab-n must be at least 1, got ", n);
  const size_t keep = std::min<size_t>(ranking.ids.size(), static_cast<size_t>(n));
  std::vector<int32_t> ids(ranking.ids.begin(), ranking.ids.begin() + static_cast<std::ptrdiff_t>(keep));
  for (int32_t eog : tokenizer.eog_ids())
    if (std::find(ids.begin(), ids.end(), eog) == ids.end()) ids.push_back(eog);
  return ids;
}

}  // namespace kestrel
