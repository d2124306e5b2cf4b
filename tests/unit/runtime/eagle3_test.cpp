// EAGLE-3 (model/eagle3_head.h, runtime/eagle3_drafter.h) on the tiny target
// and a tiny random head: the head's forward pass against a double-precision
// reference written from the equations; the hidden states the target shows
// (layer inputs: layer 0's are the embeddings, n_layer's give the logits); the
// drafter's drafts, round after round (growing, rolled-back and replaced
// contexts), against the reference run from scratch on the same features;
// greedy speculative output equal to plain decoding; and the clear errors for
// a head that does not fit its target.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/quant_kernels.h"
#include "model/eagle3_head.h"
#include "ops/norm.h"
#include "platform/dispatch.h"
#include "runtime/session.h"
#include "runtime/target_features.h"
#include "unit/runtime/tiny_eagle3.h"
#include "unit/runtime/greedy_options.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

using testing::LoadedTinyModel;
using testing::ReferenceEagle3;
using testing::TinyEagle3Spec;

LoadedTinyModel& target() {
  static LoadedTinyModel t("eagle3_target");
  return t;
}

std::vector<float> embeddings(const Model& m) {
  const Weight* w = m.plain_token_embeddings();
  std::vector<float> out(static_cast<size_t>(w->rows * w->cols));
  for (int64_t r = 0; r < w->rows; ++r)
    kernels::quant_kernels(w->type, Isa::Scalar).dequantize_row(w->row(r), &out[r * w->cols], w->cols);
  return out;
}

struct Head {
  testing::TinyEagle3Weights weights;
  std::string path;
  explicit Head(const std::string& tag, const TinyEagle3Spec& spec = {})
      : weights(testing::make_tiny_eagle3(spec)), path(testing::write_tiny_eagle3(weights, target().path, tag)) {}
  ~Head() { std::filesystem::remove(path); }
};

Head& head() {
  static Head h("main");
  return h;
}

std::vector<int32_t> tokens_of(size_t start, size_t n) {
  return target().model->tokenizer().encode(testing::tiny_text().substr(start, n), false, false);
}

float rounded_to_f16(float x) { return fp16_to_f32(f32_to_fp16(x)); }

TEST(Eagle3, HeadMatchesTheReference) {
  const Model& model = *target().model;
  const Eagle3Head eagle(head().path, model);
  EXPECT_EQ(eagle.config().n_draft_vocab, 120);
  EXPECT_EQ(eagle.target_token(3), 7);
  for (Isa isa : {Isa::Scalar, best_isa()}) {
    ThreadPool pool(2);
    ForwardScratch scratch;
    KvCache cache(eagle.kv_shape(64, 1), DType::F32, isa);
    ForwardContext ctx{pool, scratch, isa, MatmulOptions{},
                       kernels::attention_kernel_set(DType::F32, kernels::AttentionAlgo::Exact, isa)};
    eagle.prepare(ctx);
    ReferenceEagle3 ref(head().weights, embeddings(model));
    // Six positions fed from features (one batch), then two chained steps.
    const int64_t E = 128, F = eagle.features_width(), n = 6;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> features(static_cast<size_t>(n * F));
    for (auto& x : features) x = normal(rng);
    const std::vector<int32_t> tokens = tokens_of(0, 40);
    Batch b;
    for (int64_t p = 0; p < n; ++p) b.add(tokens[p + 1], static_cast<int32_t>(p), 0, true);
    std::vector<float> g(static_cast<size_t>(n * E)), prenorm(static_cast<size_t>(n * E)), logits(n * 120);
    eagle.encode(features.data(), n, g.data(), ctx);
    eagle.decode(b, g.data(), cache, ctx, prenorm.data(), logits.data());
    std::vector<double> want_prenorm, want_logits;
    for (int64_t p = 0; p < n; ++p) {
      const std::vector<double> gp =
          ref.encode(std::vector<float>(features.begin() + p * F, features.begin() + (p + 1) * F));
      for (int64_t i = 0; i < E; ++i) ASSERT_NEAR(g[p * E + i], gp[i], 1e-3 * (1 + std::fabs(gp[i]))) << p;
      want_prenorm = ref.step(tokens[p + 1], gp, p, want_logits);
      for (int64_t i = 0; i < E; ++i)
        ASSERT_NEAR(prenorm[p * E + i], want_prenorm[i], 2e-3 * (1 + std::fabs(want_prenorm[i]))) << isa_name(isa);
      for (int i = 0; i < 120; ++i)
        ASSERT_NEAR(logits[p * 120 + i], want_logits[i], 2e-3 * (1 + std::fabs(want_logits[i])));
    }
    std::vector<float> chained_g(prenorm.end() - E, prenorm.end());
    for (int64_t p = n; p < n + 2; ++p) {
      Batch one;
      one.add(tokens[p + 1], static_cast<int32_t>(p), 0, true);
      std::vector<float> out(E), lg(120);
      eagle.decode(one, chained_g.data(), cache, ctx, out.data(), lg.data());
      want_prenorm = ref.step(tokens[p + 1], std::vector<double>(chained_g.begin(), chained_g.end()), p, want_logits);
      for (int i = 0; i < 120; ++i) ASSERT_NEAR(lg[i], want_logits[i], 2e-3 * (1 + std::fabs(want_logits[i])));
      chained_g = out;
    }
  }
}

// Records the target's tapped rows in float and forwards them to the drafter's store.
class Tee : public HiddenTap {
 public:
  Tee(HiddenTap* inner, int64_t n_embd) : inner_(inner), n_embd_(n_embd) {}
  const std::vector<int>& layers() const override { return inner_->layers(); }
  void capture(int slot, const Batch& b, const float* x, int64_t n_embd) override {
    inner_->capture(slot, b, x, n_embd);
    for (int64_t t = 0; t < b.size(); ++t) {
      auto& row = rows[b.pos[t]];
      row.resize(static_cast<size_t>(3 * n_embd_));
      for (int64_t i = 0; i < n_embd; ++i) row[slot * n_embd + i] = x[t * n_embd + i];
    }
  }
  std::map<int64_t, std::vector<float>> rows;

 private:
  HiddenTap* inner_;
  int64_t n_embd_;
};

SessionOptions eagle3_options(const std::string& head_path, bool adaptive = false) {
  SessionOptions o;
  o.n_ctx = 256;
  o.engine.n_threads = 1;
  o.engine.decode.policy = DecodePolicy::Eagle3;
  o.engine.decode.eagle3_head = head_path;
  o.engine.decode.draft_max = 5;
  o.engine.decode.draft_p_min = 0.0f;
  o.engine.decode.adaptive = adaptive;
  return o;
}

TEST(Eagle3, DrafterDraftsWhatTheReferenceDraftsRoundAfterRound) {
  const Model& model = *target().model;
  SessionOptions o = eagle3_options(head().path);
  auto drafter = make_drafter(model, o.engine, o.n_ctx);
  ASSERT_NE(drafter, nullptr);
  ASSERT_NE(drafter->hidden_tap(), nullptr);
  SessionOptions plain = o;
  plain.engine.decode = {};
  Session session(model, plain);
  Tee tee(drafter->hidden_tap(), 128);
  session.set_hidden_tap(&tee);
  const std::vector<float> embd = embeddings(model);

  const std::vector<int32_t> a = tokens_of(0, 80), b = tokens_of(200, 80);
  std::vector<std::vector<int32_t>> rounds;
  rounds.emplace_back(a.begin(), a.begin() + 20);  // a prompt
  rounds.emplace_back(a.begin(), a.begin() + 24);  // 4 tokens accepted
  rounds.emplace_back(a.begin(), a.begin() + 22);  // rolled back 2 tokens...
  rounds.back().push_back(b[5]);                   // ...and corrected
  rounds.emplace_back(b.begin(), b.begin() + 30);  // another conversation
  rounds.emplace_back(b.begin(), b.begin() + 31);
  for (size_t r = 0; r < rounds.size(); ++r) {
    const std::vector<int32_t>& context = rounds[r];
    const int64_t n = static_cast<int64_t>(context.size());
    const auto before_pending = std::span<const int32_t>(context).first(static_cast<size_t>(n - 1));
    session.set_history(before_pending);
    // A new prompt is prefilled (as generate() does): the draft then
    // evaluates the pending token's position alone, no catch-up.
    const bool prompt = r == 0 || r == 3;
    if (prompt) drafter->prefill(before_pending);
    std::vector<int32_t> got;
    drafter->draft(context, 5, got);
    if (prompt) EXPECT_EQ(drafter->catch_up_seconds(), 0.0) << "round " << r;

    // The tapped rows mean what they claim: layer 0's input is the token's
    // embedding; after the last layer, the output norm and head give the logits.
    for (int64_t p = 0; p < n - 1; ++p)
      for (int i = 0; i < 128; ++i) ASSERT_EQ(tee.rows[p][i], embd[context[p] * 128 + i]);
    const auto last_logits = session.set_history(std::span<const int32_t>(context).first(static_cast<size_t>(n - 1)));
    {
      const gguf::File& f = model.file();
      const gguf::TensorInfo* norm = f.find_tensor("output_norm.weight");
      std::vector<float> w(128), normed(128);
      std::memcpy(w.data(), norm->data, 128 * sizeof(float));
      rms_norm_row(&tee.rows[n - 2][256], w.data(), 1e-5f, 128, normed.data());
      const gguf::TensorInfo* out = f.find_tensor("output.weight");  // F32, not tied, in the tiny model
      for (int v : {0, 17, 100}) {
        double dot = 0;
        const float* row = reinterpret_cast<const float*>(out->data) + v * 128;
        for (int i = 0; i < 128; ++i) dot += row[i] * normed[i];
        EXPECT_NEAR(last_logits[v], dot, 1e-3 * (1 + std::fabs(dot)));
      }
    }

    // The reference, from scratch: positions 0..n-2 from the features (as
    // stored: F16), then chained steps.
    ReferenceEagle3 ref(head().weights, embd);
    std::vector<double> logits, prenorm;
    for (int64_t p = 0; p <= n - 2; ++p) {
      std::vector<float> f = tee.rows[p];
      for (auto& x : f) x = rounded_to_f16(x);
      prenorm = ref.step(context[p + 1], ref.encode(f), p, logits);
    }
    std::vector<int32_t> want;
    for (int64_t pos = n - 1; want.size() < 5; ++pos) {
      const int32_t top = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      want.push_back(2 * top + 1);
      if (want.size() == 5) break;
      prenorm = ref.step(want.back(), prenorm, pos, logits);
    }
    EXPECT_EQ(got, want) << "round " << r;
  }
}

using testing::greedy;

// Chains and trees (--spec-branches 3: the head's next likeliest first
// tokens as branches, each run on from the head's state after the catch-up).
TEST(Eagle3, GreedyOutputIsPlainDecodings) {
  const Model& model = *target().model;
  for (int branches : {1, 3})
    for (bool adaptive : {false, true}) {
      SessionOptions plain_options = eagle3_options(head().path);
      plain_options.engine.decode = {};
      SessionOptions spec_options = eagle3_options(head().path, adaptive);
      spec_options.engine.decode.draft_branches = branches;
      Session plain(model, plain_options), spec(model, spec_options);
      int64_t drafted = 0;
      for (size_t start : {0, 150, 300}) {
        const std::vector<int32_t> prompt = tokens_of(start, 90);
        const GenerateResult want = generate(plain, prompt, greedy(40));
        const GenerateResult got = generate(spec, prompt, greedy(40));
        EXPECT_EQ(got.tokens, want.tokens) << branches << " branches";
        drafted += got.drafted;
      }
      if (!adaptive) EXPECT_GT(drafted, 0);
    }
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error, expected one with '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Eagle3, RefusesAHeadMadeForAnotherTarget) {
  const Model& model = *target().model;
  testing::TinyModelSpec other;
  other.extra_tokens = 3;
  LoadedTinyModel other_vocab("eagle3_other_vocab", other);
  expect_error([&] { Eagle3Head(head().path, *other_vocab.model); }, "vocabulary");
  TinyEagle3Spec far;
  far.target_layers = {0, 1, 5};
  Head far_layers("far_layers", far);
  expect_error([&] { Eagle3Head(far_layers.path, model); }, "layer 5");
  TinyEagle3Spec narrow;
  narrow.target_hidden = 64;
  Head narrow_head("narrow", narrow);
  expect_error([&] { Eagle3Head(narrow_head.path, model); }, "hidden size 64");
  expect_error([&] { Eagle3Head(target().path, model); }, "not an EAGLE-3 head");
  SessionOptions o = eagle3_options(head().path);
  o.engine.decode.policy = DecodePolicy::DraftModel;
  o.engine.decode.draft_model = head().path;
  expect_error([&] { Session s(model, o); }, "draft-eagle3");
  o.engine.decode.policy = DecodePolicy::Eagle3;
  o.engine.decode.eagle3_head.clear();
  expect_error([&] { Session s(model, o); }, "needs an EAGLE-3 head");
}

}  // namespace
}  // namespace kestrel
