// Draft vocabularies (--spec-draft-vocab): a corpus's token counts against a
// brute-force count, the ranking sidecar's round trip and its refusals, a
// subset head whose logits are the whole head's at its tokens bit for bit
// (float and panel formats, every kernel level), and speculative decoding
// with it still token for token plain decoding.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "gguf/gguf.h"
#include "model/draft_vocab_sidecar.h"
#include "model/quantize.h"
#include "model/vocabulary_subset.h"
#include "platform/dispatch.h"
#include "runtime/model_drafter.h"
#include "runtime/session.h"
#include "runtime/token_counts.h"
#include "unit/error_text.h"
#include "unit/runtime/greedy_options.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

const testing::LoadedTinyModel& target() {
  static testing::LoadedTinyModel m("draft_vocab_target");
  return m;
}
const testing::LoadedTinyModel& draft() {
  static testing::LoadedTinyModel m("draft_vocab_draft", [] {
    testing::TinyModelSpec s;
    s.noise = 0.25f;
    return s;
  }());
  return m;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("kestrel_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

// The counts of tiny_text's first and second halves, brute force.
std::vector<uint64_t> brute_counts(const Tokenizer& tok, const std::vector<std::string>& texts) {
  std::vector<uint64_t> c(static_cast<size_t>(tok.n_vocab()), 0);
  for (const std::string& t : texts)
    for (int32_t id : tok.encode(t, false, false)) ++c[static_cast<size_t>(id)];
  return c;
}

TEST(DraftVocabulary, CorpusCountsAreTheTokenizersBruteForce) {
  const Tokenizer& tok = target().model->tokenizer();
  const std::string text = testing::tiny_text();
  const std::string a = text.substr(0, 200), b = text.substr(200);
  const fs::path dir = temp_dir("corpus");
  fs::create_directories(dir / "sub");
  write(dir / "a.txt", a);
  write(dir / "sub" / "b.txt", b);
  write(dir / "image.bin", std::string("PNG\0\0\x01", 6) + a);  // binary: left out
  const std::vector<std::string> paths{dir.string()};
  const CorpusCount c = count_corpus_tokens(tok, paths, int64_t{1} << 20);
  EXPECT_EQ(c.counts, brute_counts(tok, {a, b}));
  EXPECT_EQ(c.files, 2);
  EXPECT_EQ(c.skipped, 1);
  EXPECT_EQ(c.bytes, static_cast<int64_t>(text.size()));

  // A file named on its own counts alone; the byte cap stops before a file that would pass it.
  const std::vector<std::string> one{(dir / "a.txt").string()};
  EXPECT_EQ(count_corpus_tokens(tok, one, int64_t{1} << 20).counts, brute_counts(tok, {a}));
  const CorpusCount capped = count_corpus_tokens(tok, paths, static_cast<int64_t>(a.size()) + 10);
  EXPECT_EQ(capped.counts, brute_counts(tok, {a}));
  EXPECT_EQ(capped.files, 1);

  const std::vector<std::string> missing{(dir / "nope").string()};
  EXPECT_NE(error_of([&] { count_corpus_tokens(tok, missing, 1 << 20); }).find("does not exist"), std::string::npos);
  const std::vector<std::string> binary_only{(dir / "image.bin").string()};
  EXPECT_NE(error_of([&] { count_corpus_tokens(tok, binary_only, 1 << 20); }).find("no text counted"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(DraftVocabulary, RankingIsByCountThenIdAndRoundTrips) {
  const Tokenizer& tok = target().model->tokenizer();
  std::vector<uint64_t> counts(static_cast<size_t>(tok.n_vocab()), 0);
  counts[7] = 5;
  counts[3] = 5;
  counts[40] = 9;
  counts[12] = 1;
  const TokenRanking r = rank_tokens(tok, counts);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{40, 3, 7, 12}));
  EXPECT_EQ(r.counts, (std::vector<int32_t>{9, 5, 5, 1}));
  EXPECT_EQ(r.corpus_tokens, 20u);

  const std::string path = (fs::temp_directory_path() / "kestrel_ranking.gguf").string();
  save_token_ranking(path, r);
  const TokenRanking back = load_token_ranking(path, tok);
  EXPECT_EQ(back.ids, r.ids);
  EXPECT_EQ(back.counts, r.counts);
  EXPECT_EQ(back.corpus_tokens, r.corpus_tokens);
  // The first n, then the end-of-generation tokens a draft must be able to propose.
  std::vector<int32_t> want{40, 3};
  for (int32_t eog : tok.eog_ids())
    if (std::find(want.begin(), want.end(), eog) == want.end()) want.push_back(eog);
  EXPECT_EQ(draft_vocabulary(back, tok, 2), want);
  EXPECT_GT(want.size(), 2u);  // the tiny vocabulary has an end token
  EXPECT_NE(error_of([&] { draft_vocabulary(back, tok, 0); }).find("at least 1"), std::string::npos);
  fs::remove(path);
}

TEST(DraftVocabulary, BadSidecarsAreRefusedNamingTheFault) {
  const Tokenizer& tok = target().model->tokenizer();
  std::vector<uint64_t> counts(static_cast<size_t>(tok.n_vocab()), 0);
  counts[5] = 3;
  counts[9] = 2;
  const TokenRanking good = rank_tokens(tok, counts);
  const std::string path = (fs::temp_directory_path() / "kestrel_bad_ranking.gguf").string();
  auto refusal = [&](const gguf::Writer& w) {
    w.write(path);
    return error_of([&] { load_token_ranking(path, tok); });
  };
  auto with_ids = [&](std::vector<int32_t> ids, std::vector<int32_t> cs) {
    TokenRanking r = good;
    r.ids = std::move(ids);
    r.counts = std::move(cs);
    return draft_vocab_writer(r);
  };
  EXPECT_NE(refusal(with_ids({5, 5}, {3, 2})).find("ranked twice"), std::string::npos);
  EXPECT_NE(refusal(with_ids({5, tok.n_vocab()}, {3, 2})).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(refusal(with_ids({5, -1}, {3, 2})).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(refusal(with_ids({9, 5}, {2, 3})).find("exceeds the one before"), std::string::npos);
  EXPECT_NE(refusal(with_ids({5, 9}, {3, 0})).find("not positive"), std::string::npos);
  gguf::Writer w = draft_vocab_writer(good);
  w.set_u32("kestrel.draft_vocab.version", 2);
  EXPECT_NE(refusal(w).find("unknown version 2"), std::string::npos);
  w = draft_vocab_writer(good);
  w.set_u64("kestrel.draft_vocab.vocab_hash", good.vocab_hash + 1);
  EXPECT_NE(refusal(w).find("another vocabulary"), std::string::npos);
  w = draft_vocab_writer(good);
  w.set_string("general.architecture", "kestrel-teal");
  EXPECT_NE(refusal(w).find("draft-vocabulary sidecar"), std::string::npos);

  // Another model's vocabulary (three more tokens).
  testing::TinyModelSpec other;
  other.extra_tokens = 3;
  testing::LoadedTinyModel wrong("draft_vocab_other", other);
  save_token_ranking(path, good);
  EXPECT_NE(error_of([&] { load_token_ranking(path, wrong.model->tokenizer()); }).find("another vocabulary"),
            std::string::npos);
  // Truncated (the end of a file is alignment padding: cut into the header).
  fs::resize_file(path, fs::file_size(path) / 2);
  const std::string truncated = error_of([&] { load_token_ranking(path, tok); });
  EXPECT_NE(truncated.find(path), std::string::npos) << truncated;
  fs::remove(path);
}

TEST(DraftVocabulary, SubsetRefusesBadLists) {
  const Model& m = *target().model;
  EXPECT_NE(error_of([&] { make_vocabulary_subset(m, {}); }).find("no tokens"), std::string::npos);
  EXPECT_NE(error_of([&] { make_vocabulary_subset(m, {3, 3}); }).find("listed twice"), std::string::npos);
  EXPECT_NE(error_of([&] { make_vocabulary_subset(m, {m.config().n_vocab}); }).find("outside"), std::string::npos);
  const auto s = make_vocabulary_subset(m, {9, 2, 5});
  EXPECT_EQ(s->ids, (std::vector<int32_t>{2, 5, 9}));
  EXPECT_EQ(s->head.rows, 3);
}

// A session scoring a subset gives, at each of its tokens, the bits the whole
// vocabulary's session gives: prompt, decode steps and all-logits batches.
void expect_subset_logits_match(const Model& model, Isa isa, const std::string& what) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < model.config().n_vocab; id += 3) ids.push_back(id);  // a third, spread out
  const auto subset = make_vocabulary_subset(model, ids);
  SessionOptions o;
  o.n_ctx = 256;
  o.engine.n_threads = 2;
  o.engine.isa = isa;
  Session whole(model, o);
  o.output_head = &subset->head;
  Session part(model, o);
  ASSERT_EQ(part.n_logits(), static_cast<int64_t>(ids.size()));
  auto expect_rows = [&](std::span<const float> full, std::span<const float> sub, int64_t rows, const char* where) {
    const auto n_vocab = static_cast<size_t>(model.config().n_vocab);
    ASSERT_EQ(full.size(), n_vocab * static_cast<size_t>(rows));
    ASSERT_EQ(sub.size(), ids.size() * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      for (size_t i = 0; i < ids.size(); ++i)
        ASSERT_EQ(sub[static_cast<size_t>(r) * ids.size() + i],
                  full[static_cast<size_t>(r) * n_vocab + static_cast<size_t>(ids[i])])
            << what << " " << isa_name(isa) << " " << where << " row " << r << " token " << ids[i];
  };
  const auto prompt = tok.encode(testing::tiny_text().substr(0, 120), true, false);
  expect_rows(whole.set_history(prompt), part.set_history(prompt), 1, "prompt");
  for (int32_t t : {17, 101, 44}) expect_rows(whole.decode(t), part.decode(t), 1, "decode");
  const auto more = tok.encode(testing::tiny_text().substr(120, 40), false, false);
  expect_rows(whole.append_all_logits(more), part.append_all_logits(more), static_cast<int64_t>(more.size()),
              "batch");
}

TEST(DraftVocabulary, SubsetLogitsAreTheWholeVocabularysBitForBit) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (runnable_isa(isa) != isa) continue;
    expect_subset_logits_match(*target().model, isa, "f32");
  }
  testing::LoadedTinyModel f32("draft_vocab_wide", testing::wide_tiny_spec());
  testing::TinyModelSpec tied = testing::wide_tiny_spec();  // the head is the embedding table (SmolLM2's layout)
  tied.tied_output = true;
  testing::LoadedTinyModel f32_tied("draft_vocab_tied", tied);
  for (const auto* source : {&f32, &f32_tied})
    for (DType type : {DType::Q8_0, DType::Q4_K}) {
      const auto model = testing::load_pure_quantized(source->path, type);
      const std::string what = std::string(dtype_name(type)) + (source == &f32_tied ? " tied" : "");
      for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
        if (runnable_isa(isa) != isa) continue;
        expect_subset_logits_match(*model, isa, what);
      }
    }
}

// A ranking of the tokens tiny_text uses, written for the tests below.
struct RankingFile {
  std::string path = (fs::temp_directory_path() / ("kestrel_tiny_ranking_" + std::to_string(::getpid()) + ".gguf"))
                         .string();
  RankingFile() {
    const Tokenizer& tok = target().model->tokenizer();
    save_token_ranking(path, rank_tokens(tok, brute_counts(tok, {testing::tiny_text()})));
  }
  ~RankingFile() { fs::remove(path); }
};

SessionOptions speculative(const std::string& ranking, int64_t n) {
  SessionOptions o;
  o.n_ctx = 256;
  o.engine.n_threads = 1;
  o.engine.decode.policy = DecodePolicy::DraftModel;
  o.engine.decode.draft_model = draft().path;
  o.engine.decode.draft_max = 5;
  o.engine.decode.draft_p_min = 0.0f;
  o.engine.decode.adaptive = false;
  o.engine.decode.draft_vocab = ranking;
  o.engine.decode.draft_vocab_n = n;
  return o;
}

TEST(DraftVocabulary, SpeculativeOutputIsStillPlainDecodings) {
  const RankingFile ranking;
  const Model& model = *target().model;
  const Tokenizer& tok = model.tokenizer();
  SessionOptions plain_options;
  plain_options.n_ctx = 256;
  plain_options.engine.n_threads = 1;
  Session plain(model, plain_options);
  Session spec(model, speculative(ranking.path, 24));
  ASSERT_NE(spec.drafter(), nullptr);
  int64_t drafted = 0, accepted = 0;
  for (size_t start : {0, 150, 300}) {
    const auto prompt = tok.encode(testing::tiny_text().substr(start, 90), true, false);
    const GenerateResult want = generate(plain, prompt, testing::greedy(50));
    const GenerateResult got = generate(spec, prompt, testing::greedy(50));
    EXPECT_EQ(got.tokens, want.tokens);
    drafted += got.drafted;
    accepted += got.accepted;
  }
  EXPECT_GT(drafted, 0);
  EXPECT_LT(accepted, drafted);  // the noisy draft is wrong sometimes: rollbacks ran too

  // Every drafted token is one of the subset's.
  const TokenRanking r = load_token_ranking(ranking.path, tok);
  const std::vector<int32_t> keep = draft_vocabulary(r, tok, 24);
  const auto subset = make_vocabulary_subset(*draft().model, keep);
  SessionOptions o;
  o.n_ctx = 256;
  o.engine.n_threads = 1;
  ModelDrafter drafter(std::shared_ptr<const Model>(std::shared_ptr<const Model>{}, draft().model.get()), o, 0, 0.0f,
                       subset);
  const auto context = tok.encode(testing::tiny_text().substr(40, 60), true, false);
  std::vector<int32_t> out;
  drafter.draft(context, 12, out);
  ASSERT_EQ(out.size(), 12u);
  for (int32_t t : out) EXPECT_TRUE(std::binary_search(subset->ids.begin(), subset->ids.end(), t)) << t;
}

TEST(DraftVocabulary, OnlyDraftModelsTakeItAndGenerateNeedsEveryToken) {
  const RankingFile ranking;
  const Model& model = *target().model;
  SessionOptions o = speculative(ranking.path, 24);
  o.engine.decode.policy = DecodePolicy::NgramSimple;
  o.engine.decode.draft_model.clear();
  EXPECT_NE(error_of([&] { Session s(model, o); }).find("--spec-draft-vocab applies to a draft model"),
            std::string::npos);
  o = speculative(ranking.path, 0);
  EXPECT_NE(error_of([&] { Session s(model, o); }).find("--spec-draft-vocab-n must be at least 1"), std::string::npos);

  const auto subset = make_vocabulary_subset(model, {1, 2, 3});
  SessionOptions plain;
  plain.n_ctx = 64;
  plain.engine.n_threads = 1;
  plain.output_head = &subset->head;
  Session s(model, plain);
  const std::vector<int32_t> prompt{1, 2};
  EXPECT_NE(error_of([&] { generate(s, prompt, testing::greedy(4)); }).find("sampling needs them all"),
            std::string::npos);
}

}  // namespace
}  // namespace kestrel
