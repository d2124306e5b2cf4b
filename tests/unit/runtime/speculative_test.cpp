// Speculative decoding (Session + generate with a decode policy) on the tiny
// model: greedy output token for token the plain decoder's, for a draft model
// (the tiny model with noise: same vocabulary, often wrong, so drafts are
// rejected and rolled back) and for n-gram lookup; sampled output distributed
// exactly as plain sampling (chi-square over every 4-token continuation, its
// probabilities computed from the plain session's logits with the exact
// reference chain); and the clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/quantize.h"
#include "platform/cpu.h"
#include "platform/dispatch.h"
#include "runtime/model_drafter.h"
#include "runtime/session.h"
#include "unit/runtime/greedy_options.h"
#include "unit/runtime/tiny_model.h"
#include "unit/sampling/exact_reference.h"
#include "unit/sanitizer.h"

namespace kestrel {
namespace {

testing::TinyModelSpec spec(float noise, bool small) {
  testing::TinyModelSpec s;
  s.noise = noise;
  if (small) {  // a quarter of the work per token, for the 10^5 draws below
    s.n_layer = 1;
    s.n_embd = 64;
    s.n_head = 1;
    s.n_ff = 128;
  }
  return s;
}

// A target and its draft: the target with noise (same vocabulary, right
// often enough to be accepted, wrong often enough to be rolled back).
struct Pair {
  testing::LoadedTinyModel target, draft;
  explicit Pair(bool small)
      : target(small ? "spec_small_target" : "spec_target", spec(0.0f, small)),
        draft(small ? "spec_small_draft" : "spec_draft", spec(0.25f, small)) {}
};
Pair& pair(bool small = false) {
  static Pair p(false), q(true);
  return small ? q : p;
}

SessionOptions options(DecodePolicy policy, int draft_max = 5, bool small = false) {
  SessionOptions o;
  o.n_ctx = 256;
  o.engine.n_threads = 1;
  o.engine.decode.policy = policy;
  o.engine.decode.draft_max = draft_max;
  o.engine.decode.draft_p_min = 0.0f;  // draft every time: more rejections to roll back
  o.engine.decode.adaptive = false;    // draft lengths that do not depend on timings
  o.engine.decode.ngram_n = 2;
  o.engine.decode.ngram_m = 8;
  if (policy == DecodePolicy::DraftModel || policy == DecodePolicy::Auto)
    o.engine.decode.draft_model = pair(small).draft.path;
  return o;
}

using testing::greedy;

std::vector<std::vector<int32_t>> prompts() {
  const Tokenizer& tok = pair().target.model->tokenizer();
  const std::string text = testing::tiny_text();
  std::vector<std::vector<int32_t>> out;
  for (size_t start : {0, 60, 150, 300, 420}) out.push_back(tok.encode(text.substr(start, 90), true, false));
  return out;
}

TEST(Speculative, GreedyOutputIsPlainDecodingsForEveryPolicy) {
  const Model& model = *pair().target.model;
  // Auto's draft lengths adapt to measured times: any of them must give the same text.
  for (DecodePolicy policy : {DecodePolicy::DraftModel, DecodePolicy::NgramSimple, DecodePolicy::Auto}) {
    Session plain(model, options(DecodePolicy::Plain));
    Session spec(model, options(policy));
    ASSERT_NE(spec.drafter(), nullptr);
    int64_t drafted = 0, accepted = 0;
    for (const auto& prompt : prompts()) {
      const GenerateResult want = generate(plain, prompt, greedy(60));
      const GenerateResult got = generate(spec, prompt, greedy(60));
      EXPECT_EQ(got.tokens, want.tokens) << decode_policy_name(policy);
      EXPECT_EQ(got.text, want.text);
      EXPECT_EQ(spec.n_past(), static_cast<int64_t>(spec.history().size()));
      drafted += got.drafted;
      accepted += got.accepted;
      EXPECT_LE(got.target_passes, static_cast<int64_t>(got.tokens.size()));
    }
    // Drafts were made, some taken and some rolled back.
    if (policy != DecodePolicy::Auto) {
      EXPECT_GT(accepted, 0) << decode_policy_name(policy);
    }
    if (policy == DecodePolicy::DraftModel) {
      EXPECT_LT(accepted, drafted);
    }
  }
}

// Greedy speculative output is plain decoding's only if a verification
// pass computes each row bit for bit as a decode step does. Q4_K/Q6_K do not
// on their own: batches scale each group in float where one token sums a
// super-block in int32 (kernels/panel_types.h); Session::verify asks for the
// decode kernels. Checked for every panel format family and kernel level.
TEST(Speculative, VerifyRowsAreDecodeStepsBitForBit) {
  testing::LoadedTinyModel f32("spec_wide", testing::wide_tiny_spec());
  const auto prompt = prompts()[0];
  const std::vector<int32_t> next(prompt.begin(), prompt.begin() + 9);
  for (DType type : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::IQ4_XS}) {
    const auto model = testing::load_pure_quantized(f32.path, type);
    const int64_t n_vocab = model->config().n_vocab;
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
      if (runnable_isa(isa) != isa) continue;
      SessionOptions o = options(DecodePolicy::Plain);
      o.engine.isa = isa;
      Session steps(*model, o), batch(*model, o);
      steps.set_history(std::span<const int32_t>(prompt).subspan(10));
      batch.set_history(std::span<const int32_t>(prompt).subspan(10));
      const std::vector<float> rows = batch.verify(next);
      for (size_t i = 0; i < next.size(); ++i) {
        const auto step = steps.append(std::span<const int32_t>(&next[i], 1));
        const std::span<const float> row(rows.data() + i * n_vocab, static_cast<size_t>(n_vocab));
        ASSERT_TRUE(std::equal(step.begin(), step.end(), row.begin()))
            << dtype_name(type) << " " << isa_name(isa) << " row " << i;
      }
    }
  }
}

TEST(Speculative, ContinuesAConversationAfterRollbacks) {
  // A second turn re-sends the first turn's text: the session reuses what
  // its history (accepted tokens only) still holds, as plain decoding does.
  const Model& model = *pair().target.model;
  Session plain(model, options(DecodePolicy::Plain));
  Session spec(model, options(DecodePolicy::DraftModel));
  auto turn = prompts()[1];
  for (int round = 0; round < 3; ++round) {
    const GenerateResult want = generate(plain, turn, greedy(20));
    const GenerateResult got = generate(spec, turn, greedy(20));
    ASSERT_EQ(got.tokens, want.tokens) << "round " << round;
    turn.insert(turn.end(), want.tokens.begin(), want.tokens.end());
    const auto more = prompts()[round + 2];
    turn.insert(turn.end(), more.begin(), more.begin() + 5);
  }
}

// Every continuation of 4 tokens, sampled with top-k 3 at temperature 1.1, by
// the speculative session (chains, or trees of `branches`): the counts
// against the exact probabilities.
void expect_the_targets_distribution(int branches) {
  const Model& model = *pair(true).target.model;
  const int n_vocab = model.config().n_vocab;
  SamplingParams sp;
  sp.temperature = 1.1f;
  sp.top_k = 3;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  const auto prompt = prompts()[2];

  // The reference: the chain's exact distribution after every prefix, from
  // the plain session's logits.
  Session plain(model, options(DecodePolicy::Plain, 3, true));
  std::map<std::vector<int32_t>, double> want;
  std::vector<std::pair<std::vector<int32_t>, double>> frontier = {{{}, 1.0}};
  for (int depth = 0; depth < 4; ++depth) {
    std::vector<std::pair<std::vector<int32_t>, double>> next;
    for (const auto& [tail, p] : frontier) {
      std::vector<int32_t> seq = prompt;
      seq.insert(seq.end(), tail.begin(), tail.end());
      const auto logits = plain.set_history(seq);
      const test::Filtered f = test::exact_filtered(std::vector<float>(logits.begin(), logits.end()), sp);
      for (size_t i = 0; i < f.ids.size(); ++i) {
        auto t = tail;
        t.push_back(f.ids[i]);
        next.push_back({t, p * f.prob[i]});
      }
    }
    frontier = std::move(next);
  }
  for (const auto& [t, p] : frontier) want[t] = p;
  ASSERT_LE(want.size(), static_cast<size_t>(n_vocab));

  SessionOptions o = options(DecodePolicy::DraftModel, 3, true);
  o.engine.decode.draft_branches = branches;
  Session spec(model, o);
  std::map<std::vector<int32_t>, int64_t> seen;
  // A fifth under a sanitizer (at 10^5 draws the tree test took 183 s of an ASan
  // run); the chi-square merges bins below 5 expected, so it stays valid.
  const int64_t draws = testing::under_sanitizer() ? 20000 : 100000;
  int64_t drafted = 0, accepted = 0;
  GenerateOptions g = greedy(4);
  g.sampling = sp;
  for (int64_t i = 0; i < draws; ++i) {
    g.sampling.seed = static_cast<uint64_t>(i + 1);
    const GenerateResult r = generate(spec, prompt, g);
    ++seen[r.tokens];
    drafted += r.drafted;
    accepted += r.accepted;
  }
  // Outcomes as bins 0..K-1 of the exact reference's chi-square.
  test::Filtered f;
  std::vector<int64_t> counts(static_cast<size_t>(n_vocab), 0);
  int32_t bin = 0;
  for (const auto& [t, p] : want) {
    f.ids.push_back(bin);
    f.prob.push_back(p);
    counts[static_cast<size_t>(bin)] = seen.count(t) ? seen[t] : 0;
    ++bin;
  }
  int64_t outside = draws;
  for (const auto& [t, c] : seen)
    if (want.count(t)) outside -= c;
  const test::ChiSquare r = test::chi_square(f, counts);
  EXPECT_EQ(outside, 0);
  EXPECT_GT(r.p_value, 0.001) << "chi2 " << r.stat << " df " << r.df;
  EXPECT_GT(accepted, draws / 10);
  EXPECT_LT(accepted, drafted);
}

TEST(Speculative, SampledContinuationsFollowTheTargetsDistribution) { expect_the_targets_distribution(1); }
TEST(Speculative, SampledTreeContinuationsFollowTheTargetsDistribution) { expect_the_targets_distribution(3); }

// QSpec: the target's own Q8_0 weights draft with 4-bit activations; the
// output is the target's greedy text, drafts are mostly taken and sometimes
// not (4-bit activations do move the argmax).
TEST(Speculative, QSpecDraftsWithTheTargetsWeightsAtFourBitActivations) {
  const testing::LoadedTinyModel& f32 = pair().target;
  QuantizeOptions q;
  q.type = DType::Q8_0;
  q.pure = true;
  const std::string path = f32.path + ".q8_0.gguf";
  quantize_model(f32.path, path, q);
  const auto model = load_model(path);
  std::filesystem::remove(path);
  Session plain(*model, options(DecodePolicy::Plain));
  Session spec(*model, options(DecodePolicy::QSpec, 3));
  ASSERT_NE(spec.drafter(), nullptr);
  int64_t drafted = 0, accepted = 0;
  for (const auto& prompt : prompts()) {
    const GenerateResult want = generate(plain, prompt, greedy(60));
    const GenerateResult got = generate(spec, prompt, greedy(60));
    EXPECT_EQ(got.tokens, want.tokens);
    drafted += got.drafted;
    accepted += got.accepted;
  }
  EXPECT_GT(accepted, drafted / 4) << "4-bit activations should agree with 8-bit ones most of the time";
  EXPECT_LT(accepted, drafted) << "4-bit activations never changed a draft: are they applied?";

  SessionOptions o = options(DecodePolicy::QSpec);
  o.engine.decode.draft_model = pair().draft.path;
  EXPECT_THROW(Session(*model, o), Error);  // qspec takes no draft model
  o = options(DecodePolicy::QSpec);
  o.engine.matmul.activation_bits = 4;
  EXPECT_THROW(Session(*model, o), Error);                                           // nothing left to verify
  EXPECT_THROW(Session(*pair().target.model, options(DecodePolicy::QSpec)), Error);  // F32 weights: float activations
  o = options(DecodePolicy::Plain);
  o.engine.matmul.activation_bits = 4;
  EXPECT_NO_THROW(Session(*model, o));                    // act=a4 on Q8_0 weights
  EXPECT_THROW(Session(*pair().target.model, o), Error);  // ... never silently on float-activation ones
}

// A draft model stops where DraftStop's rule says, on its own probabilities:
// the tokens and the length of a reference walk over a plain session's logits
// (softmax in double), for several path floors.
TEST(Speculative, ModelDrafterStopsWhereItsDraftBecomesTooUnlikely) {
  const Model& draft_model = *pair().draft.model;
  const auto context = prompts()[1];
  SessionOptions o;
  o.n_ctx = 256;
  o.engine.n_threads = 1;
  int lengths = 0;
  for (double floor : {0.6, 0.3, 0.1, 0.02}) {
    std::vector<int32_t> want;
    bool near_tie = false;
    {
      Session ref(draft_model, o);
      std::span<const float> logits = ref.set_history(context);
      double path = 1.0;
      for (;;) {
        const int32_t top = argmax(logits);
        double sum = 0.0;
        for (float l : logits) sum += std::exp(static_cast<double>(l) - logits[static_cast<size_t>(top)]);
        const double p = 1.0 / sum;
        near_tie |= std::abs(path * p - floor) < 1e-4;
        if (path * p < floor || want.size() == 16) break;
        path *= p;
        want.push_back(top);
        logits = ref.append(std::span<const int32_t>(&top, 1));
      }
    }
    if (near_tie) continue;  // float against double could decide either way
    ModelDrafter drafter(std::shared_ptr<const Model>(std::shared_ptr<const Model>{}, &draft_model), o, 0, 0.0f);
    drafter.set_path_floor(floor);
    std::vector<int32_t> got;
    drafter.draft(context, 16, got);
    EXPECT_EQ(got, want) << "floor " << floor;
    lengths += static_cast<int>(want.size());
  }
  EXPECT_GT(lengths, 0);  // some floor let tokens through
}

// A draft model prefilled with the prompt drafts what it drafts without, and
// its first draft then evaluates the pending token alone (no catch-up).
TEST(Speculative, ModelDrafterPrefilledWithThePromptDraftsTheSame) {
  const Model& draft_model = *pair().draft.model;
  const auto context = prompts()[2];
  const auto prompt = std::span<const int32_t>(context).first(context.size() - 1);
  SessionOptions o;
  o.n_ctx = 256;
  o.engine.n_threads = 1;
  auto shared = std::shared_ptr<const Model>(std::shared_ptr<const Model>{}, &draft_model);
  ModelDrafter cold(shared, o, 0, 0.0f), warm(shared, o, 0, 0.0f);
  std::vector<int32_t> want, got;
  cold.draft(context, 6, want);
  EXPECT_GT(cold.catch_up_seconds(), 0.0);  // the prompt, evaluated in the first draft
  warm.prefill(prompt);
  warm.draft(context, 6, got);
  EXPECT_EQ(warm.catch_up_seconds(), 0.0);
  EXPECT_EQ(got, want);
  ASSERT_EQ(want.size(), 6u);
}

// A draft tree's verification: every row bit for bit the row a chain
// verification of its branch gives (each branch runs in its own KV sequence
// over the shared history), and the branch kept becomes the history: the
// next decode step equals that of a session fed the same tokens plainly, and
// the other branches' blocks are given back.
TEST(Speculative, TreeRowsAreEachBranchsChainRows) {
  const Model& model = *pair().target.model;
  const int64_t n_vocab = model.config().n_vocab;
  const auto prompt = prompts()[3];
  DraftTree tree;  // pending -> a -> b -> c, a -> d; pending -> e -> f; pending -> g
  const int32_t a = tree.add(prompt[5], -1), b = tree.add(prompt[6], a);
  tree.add(prompt[7], b);
  tree.add(prompt[8], a);
  tree.add(prompt[9], tree.add(prompt[10], -1));
  tree.add(prompt[11], -1);
  const int32_t pending = prompt[4];
  SessionOptions o = options(DecodePolicy::DraftModel);
  o.engine.decode.draft_branches = 4;
  std::vector<int32_t> leaves, path;
  for (int32_t i = 0; i < tree.size(); ++i)
    if (tree.is_leaf(i)) leaves.push_back(i);
  ASSERT_EQ(leaves.size(), 4u);
  for (size_t kept = 0; kept < leaves.size(); ++kept) {
    Session spec(model, o);
    spec.set_history(prompt);
    const std::vector<float> rows = spec.verify_tree(pending, tree);
    ASSERT_EQ(rows.size(), static_cast<size_t>((1 + tree.size()) * n_vocab));
    for (int32_t leaf : leaves) {
      tree.path(leaf, path);
      std::vector<int32_t> chain = {pending};
      for (int32_t node : path) chain.push_back(tree.tokens[static_cast<size_t>(node)]);
      Session ref(model, options(DecodePolicy::Plain));
      ref.set_history(prompt);
      const std::vector<float>& want = ref.verify(chain);
      for (size_t d = 0; d < chain.size(); ++d) {
        const size_t row = d == 0 ? 0 : static_cast<size_t>(path[d - 1]) + 1;
        ASSERT_TRUE(std::equal(want.begin() + static_cast<std::ptrdiff_t>(d * n_vocab),
                               want.begin() + static_cast<std::ptrdiff_t>((d + 1) * n_vocab),
                               rows.begin() + static_cast<std::ptrdiff_t>(row * n_vocab)))
            << "leaf " << leaf << " depth " << d;
      }
    }
    // Keep the path to the kept leaf's parent (the leaf itself for a one-node branch).
    const int32_t node = tree.depth(leaves[kept]) > 1 ? tree.parent[static_cast<size_t>(leaves[kept])] : leaves[kept];
    spec.keep_branch(tree, node);
    tree.path(node, path);
    std::vector<int32_t> history = prompt;
    history.push_back(pending);
    for (int32_t n : path) history.push_back(tree.tokens[static_cast<size_t>(n)]);
    EXPECT_EQ(spec.history(), history);
    EXPECT_EQ(spec.cache().seq_len(0), static_cast<int64_t>(history.size()));
    for (int seq = 1; seq < 4; ++seq) {
      const int seqs[] = {seq};
      EXPECT_EQ(spec.cache().blocks_held(seqs), 0) << "branch " << seq << " kept its blocks";
    }
    Session ref(model, options(DecodePolicy::Plain));  // the prompt, then the kept tokens as a decode step
    ref.set_history(prompt);
    ref.verify(std::span(history).subspan(prompt.size()));
    const auto next = spec.decode(prompt[12]);
    const auto want = ref.decode(prompt[12]);
    EXPECT_TRUE(std::equal(next.begin(), next.end(), want.begin())) << "kept leaf " << leaves[kept];
  }
}

// With alternatives for the first drafted token, greedy output is still plain
// decoding's, and the target takes more drafted tokens than from chains alone.
TEST(Speculative, GreedyTreeOutputIsPlainDecodings) {
  const Model& model = *pair().target.model;
  Session plain(model, options(DecodePolicy::Plain)), chains(model, options(DecodePolicy::DraftModel));
  SessionOptions o = options(DecodePolicy::DraftModel);
  o.engine.decode.draft_branches = 3;
  Session trees(model, o);
  int64_t chain_accepted = 0, tree_accepted = 0, chain_passes = 0, tree_passes = 0;
  for (const auto& prompt : prompts()) {
    const GenerateResult want = generate(plain, prompt, greedy(60));
    const GenerateResult chain = generate(chains, prompt, greedy(60));
    const GenerateResult got = generate(trees, prompt, greedy(60));
    EXPECT_EQ(got.tokens, want.tokens);
    EXPECT_EQ(trees.n_past(), static_cast<int64_t>(trees.history().size()));
    chain_accepted += chain.accepted;
    tree_accepted += got.accepted;
    chain_passes += chain.target_passes;
    tree_passes += got.target_passes;
  }
  EXPECT_GT(tree_accepted, chain_accepted);
  EXPECT_LT(tree_passes, chain_passes);
}

TEST(Speculative, RefusesWhatCannotWork) {
  const Model& model = *pair().target.model;
  testing::TinyModelSpec other;
  other.extra_tokens = 3;
  testing::LoadedTinyModel wrong("spec_other_vocab", other);
  SessionOptions o = options(DecodePolicy::DraftModel);
  o.engine.decode.draft_model = wrong.path;
  EXPECT_THROW(Session(model, o), Error);  // another vocabulary
  o.engine.decode.draft_model = "";
  EXPECT_THROW(Session(model, o), Error);  // draft-simple without -md
  o = options(DecodePolicy::NgramSimple, 300);
  EXPECT_THROW(Session(model, o), Error);  // a draft longer than the context (256)
  o = options(DecodePolicy::NgramSimple);
  o.engine.decode.ngram_n = 0;
  EXPECT_THROW(Session(model, o), Error);
  o = options(DecodePolicy::NgramSimple);
  o.engine.decode.draft_branches = 2;
  EXPECT_THROW(Session(model, o), Error);  // n-gram lookup has no alternatives to offer
  o = options(DecodePolicy::DraftModel);
  o.engine.decode.draft_branches = kMaxDraftBranches + 1;
  EXPECT_THROW(Session(model, o), Error);
  o.engine.decode.draft_branches = 0;
  EXPECT_THROW(Session(model, o), Error);
  o = options(DecodePolicy::DraftModel);
  o.engine.kv_compress = {KvCompressConfig::Mode::Metric, 0, 64};  // a budget would evict per pass, not per token
  EXPECT_THROW(Session(model, o), Error);
  o.engine.kv_compress = {KvCompressConfig::Mode::Metric, 2, 0};  // eviction after the prompt only: allowed
  EXPECT_NO_THROW(Session(model, o));
}

}  // namespace
}  // namespace kestrel
