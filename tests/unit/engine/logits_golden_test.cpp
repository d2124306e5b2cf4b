// The engine against llama.cpp on the same GGUF file (fixtures from
// tests/golden/make_logits_fixtures.sh): token ids, last-position logits, logits
// at every prompt position, and 32 greedy tokens.
//
// Bit-identical logits are not a reachable target: llama.cpp's own two CPU paths
// for this file (its AMX kernels and its plain AVX-512 kernels, same build) differ
// by up to ~1 logit on SmolLM2, because the model's attention-sink token carries
// activations in the tens of thousands that amplify last-bit differences (see
// tests/golden/logits/README.md). So the bars are set by that spread, measured
// from the fixtures themselves rather than picked:
//  - noise = mean over cases of mean |llama.cpp AMX - llama.cpp plain|;
//  - near tie: a top-two gap below tau = max(0.05, 2 * noise);
//  - our summed mean |diff| must stay within 1.5x llama.cpp's own, plus 0.05;
//  - top-1 identical wherever llama.cpp's gap is not a near tie;
//  - greedy tokens identical; the first difference may only fall on a near tie.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "golden/logits_fixture.h"
#include "model/model.h"
#include "model_paths.h"
#include "runtime/session.h"
#include "sampling/sampler.h"

namespace kestrel {
namespace {

struct Diff {
  double max_abs = 0, mean_abs = 0;
};

Diff compare(std::span<const float> a, std::span<const float> b) {
  Diff d;
  for (size_t i = 0; i < b.size(); ++i) {
    const double x = std::fabs(double(a[i]) - b[i]);
    d.max_abs = std::max(d.max_abs, x);
    d.mean_abs += x;
  }
  d.mean_abs /= b.size();
  return d;
}

float top_gap(std::span<const float> l) {
  float a = -INFINITY, b = -INFINITY;
  for (float x : l) {
    if (x > a) {
      b = a;
      a = x;
    } else if (x > b) {
      b = x;
    }
  }
  return a - b;
}

constexpr double kMaxAbsBound = 2.0;  // any single logit: catches gross errors outright

// second_dir: a second llama.cpp set for the same prompts (its spread from the
// first is the noise). Without one, self_noise measures the noise as the spread
// between our own scalar kernels and the best Isa's (another summation order
// of the same arithmetic), for models that amplify last-bit differences.
void check_model(const std::filesystem::path& model_path, const std::string& fixture_dir,
                 const std::string& second_dir, bool self_noise = false) {
  if (!std::filesystem::exists(model_path)) GTEST_SKIP() << "model not fetched: " << model_path;
  const auto dir = testing::golden_dir() / "logits";
  const auto set = golden::load_logits_fixtures(dir / fixture_dir);
  std::optional<golden::LogitsFixtureSet> second;
  if (!second_dir.empty() && std::filesystem::exists(dir / second_dir / "fixtures.json"))
    second = golden::load_logits_fixtures(dir / second_dir);

  // llama.cpp's spread between its two paths, and the near-tie threshold.
  double noise_sum = 0;
  int noise_n = 0;
  if (second) {
    for (const auto& c : second->cases) {
      const Diff d = compare(c.last_logits, set.get(c.name).last_logits);
      noise_sum += d.mean_abs;
      ++noise_n;
      std::printf("[ llama.cpp ] second set vs main %-14s max |diff| %.4f  mean |diff| %.5f\n", c.name.c_str(),
                  d.max_abs, d.mean_abs);
    }
  }
  auto model = load_model(model_path.string());
  ASSERT_EQ(model->config().n_vocab, set.n_vocab);
  SessionOptions so;
  so.n_ctx = 512;
  so.engine.n_threads = 2;
  Session session(*model, so);
  double self_sum = 0;
  if (self_noise && so.engine.isa != Isa::Scalar) {
    SessionOptions scalar_opts = so;
    scalar_opts.engine.isa = Isa::Scalar;
    Session scalar(*model, scalar_opts);
    for (const auto& c : set.cases) {
      const std::span<const float> sa = scalar.set_history(c.ids);
      const std::vector<float> a(sa.begin(), sa.end());
      const Diff d = compare(a, session.set_history(c.ids));
      self_sum += d.mean_abs;
      std::printf("[ kestrel ] scalar vs %s %-10s max |diff| %.4f  mean |diff| %.5f\n", std::string(isa_name(so.engine.isa)).c_str(),
                  c.name.c_str(), d.max_abs, d.mean_abs);
    }
    noise_sum = self_sum;
    noise_n = static_cast<int>(set.cases.size());
  }
  const double tau = std::max(0.05, noise_n ? 2.0 * noise_sum / noise_n : 0.05);
  std::printf("[ logits ] near-tie threshold tau = %.3f\n", tau);
  double ours_sum = 0, ours_noise_cases = 0, ours_vs_second = 0;
  size_t greedy_same = 0, greedy_total = 0;
  for (const auto& c : set.cases) {
    SCOPED_TRACE("case " + c.name);
    EXPECT_EQ(model->tokenizer().encode(c.prompt, true, true), c.ids);

    session.clear();
    if (c.positions) {
      const auto& all = session.append_all_logits(c.ids);
      const auto& P = *c.positions;
      for (int32_t r = 0; r < P.rows; ++r) {
        const float* ours = all.data() + size_t(r) * set.n_vocab;
        if (P.gaps[r] >= tau) EXPECT_EQ(argmax({ours, size_t(set.n_vocab)}), P.argmax[r]) << "position " << r;
        for (int32_t col = 0; col < P.n_cols; ++col)
          ASSERT_NEAR(ours[P.token_of_col(col)], P.row(r)[col], kMaxAbsBound) << "position " << r << " col " << col;
      }
      session.clear();
    }
    auto logits = session.set_history(c.ids);
    const Diff d = compare(logits, c.last_logits);
    const float gap = top_gap(c.last_logits);
    std::printf("[ logits ] %-16s tokens %3zu  max |diff| %.4f  mean |diff| %.5f  llama.cpp top-2 gap %.3f\n",
                c.name.c_str(), c.ids.size(), d.max_abs, d.mean_abs, gap);
    if (self_sum > 0) {
      ours_sum += d.mean_abs;
    } else if (second && std::any_of(second->cases.begin(), second->cases.end(),
                                     [&](const auto& s) { return s.name == c.name; })) {
      ours_sum += d.mean_abs;
      ours_vs_second += compare(logits, second->get(c.name).last_logits).mean_abs;
      ++ours_noise_cases;
    }
    EXPECT_LT(d.max_abs, kMaxAbsBound);
    if (gap >= tau) EXPECT_EQ(argmax(logits), argmax(c.last_logits)) << "llama.cpp gap " << gap;

    // Greedy continuation: identical tokens for as long as the prefixes agree;
    // the first difference must fall on a near tie of llama.cpp's (after it the
    // two continuations have different prefixes and are not compared).
    size_t same = 0;
    for (size_t k = 0; k < c.greedy.size(); ++k) {
      const int32_t next = argmax(logits);
      if (next != c.greedy[k]) {
        EXPECT_LT(c.greedy_gaps[k], tau) << "greedy token " << k << ": ours " << next << ", llama.cpp "
                                         << c.greedy[k] << " (llama.cpp gap " << c.greedy_gaps[k] << ")";
        break;
      }
      ++same;
      if (k + 1 < c.greedy.size()) logits = session.append(std::span<const int32_t>(&next, 1));
    }
    std::printf("[ greedy ] %-16s identical for %zu of %zu tokens%s\n", c.name.c_str(), same, c.greedy.size(),
                same < c.greedy.size() ? " (then a near tie)" : "");
    greedy_same += same;
    greedy_total += c.greedy.size();
  }
  std::printf("[ greedy ] %zu of %zu greedy tokens identical to llama.cpp's\n", greedy_same, greedy_total);
  if (noise_n) {
    std::printf("[ logits ] summed mean |diff|: ours vs llama.cpp %.4f, %s %.4f (%d cases)\n", ours_sum,
                self_sum > 0 ? "our scalar vs best Isa" : "llama.cpp second set vs main", noise_sum, noise_n);
    // Reported, not a bar: which of llama.cpp's two paths we sit closer to.
    if (second) std::printf("[ logits ] summed mean |diff|: ours vs llama.cpp's second set %.4f\n", ours_vs_second);
    EXPECT_LE(ours_sum, 1.5 * noise_sum + 0.05);
  }
}

}  // namespace

TEST(LogitsGolden, SmolLM2Q4_1MatchesLlamaCpp) {
  check_model(testing::smollm2_path(), "smollm2-q4_1", "smollm2-q4_1-amx");
}

TEST(LogitsGolden, Qwen2Q4_K_MMatchesLlamaCpp) {
  if (!std::filesystem::exists(testing::golden_dir() / "logits" / "qwen2.5-1.5b-q4_k_m" / "fixtures.json"))
    GTEST_SKIP() << "no qwen2 fixtures";
  check_model(testing::qwen2_path(), "qwen2.5-1.5b-q4_k_m", "");
}

// q5_0, q6_K and q8_0 tensors in one file (Qwen2.5-Coder-0.5B as published).
// It amplifies last-bit differences as SmolLM2 and gemma do (our scalar and
// AVX2 kernels differ by 0.05-0.07 mean |logit| on these prompts): the bars
// come from llama.cpp's own spread between its AVX-512 build (the main set,
// Sapphire Rapids) and its AVX2 build (qwen2.5-0.5b-avx2, AMD Zen 3).
TEST(LogitsGolden, Qwen2_0_5BMixedFormatsMatchLlamaCpp) {
  if (!std::filesystem::exists(testing::golden_dir() / "logits" / "qwen2.5-0.5b" / "fixtures.json"))
    GTEST_SKIP() << "no qwen2.5-0.5b fixtures";
  check_model(testing::qwen2_05b_path(), "qwen2.5-0.5b", "qwen2.5-0.5b-avx2");
}

// Gemma 3 270M Q4_K_M (262k vocabulary, q8_0 tied output, sliding-window layers;
// the prompts are shorter than the 512-token window, which the model unit test
// covers). Gemma amplifies last-bit differences as SmolLM2 does: our own scalar
// and AVX2 kernels differ by 0.13-0.29 mean |logit| on these prompts, as much as
// either differs from llama.cpp; with no second llama.cpp set on this CPU (no
// AMX), that self spread sets the bars.
TEST(LogitsGolden, Gemma3_270MMatchesLlamaCpp) {
  if (!std::filesystem::exists(testing::golden_dir() / "logits" / "gemma3-270m-q4_k_m" / "fixtures.json"))
    GTEST_SKIP() << "no gemma3 fixtures";
  check_model(testing::gemma3_path(), "gemma3-270m-q4_k_m", "", /*self_noise=*/true);
}

}  // namespace kestrel
