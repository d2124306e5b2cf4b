// Every switch reaches every host. Walks the registry: for each switch and each
// value this CPU runs that differs from the default configuration, each host
// (Session: run/chat/bench's engine; Scheduler: serve; the perplexity
// evaluator; bench) is built with the setting and must
//   - report it back (the host's resolved configuration, as the host prints
//     it: bench JSON, the server's /props, perplexity's header), and
//   - show the switch's declared effect (switches/registry.h SwitchEffect):
//     other logits, other draws for one seed, or neither; or, for KV
//     eviction (kvcompress, kv_budget), the effect below.
// A switch added later that does not reach a host fails here.
//
// Eviction (SwitchEffect::Evicts) happens once a prompt is cached, and only
// blocks older than the protected window (the last 32 positions) go: the
// walk's prompt is about that short, so checking "other logits" on it would
// test nothing or fail by chance. What is checked instead is what eviction
// promises, on a prompt of 200 tokens as well: the prompt's own logits equal
// the baseline's (they come before the eviction), the host then holds fewer
// KV blocks than the baseline (Session: its cache; Scheduler: the blocks its
// stats say were evicted and freed), and the next decode step's logits differ
// (the attention saw the shorter heads). The perplexity host scores a chunk
// in one forward pass, so it must refuse the value, naming kestrel longeval --ppl.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/packed_gemm.h"
#include "model/quantize.h"
#include "ops/matmul.h"
#include "platform/cpu.h"
#include "runtime/bench.h"
#include "runtime/perplexity.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "switches/registry.h"
#include "unit/runtime/tiny_cq.h"
#include "unit/runtime/tiny_model.h"
#include "unit/runtime/tiny_teal.h"

namespace kestrel {
namespace {

// The tiny model in Q8_0, so that the weight kernels have panels, vec_dot and
// SIMD versions to choose from (F32 weights have one path only), with CQ
// codebooks beside it for kv=cq2 and kv=cq1 and TEAL thresholds for teal.
struct QuantizedTiny {
  testing::LoadedTinyModel f32{"switch_hosts"};
  std::string path = f32.path + ".q8_0.gguf";
  std::unique_ptr<Model> model;
  std::vector<std::string> sidecars;
  QuantizedTiny() {
    QuantizeOptions qo;
    qo.type = DType::Q8_0;
    qo.pure = true;
    quantize_model(f32.path, path, qo);
    model = load_model(path);
    for (CqSpec spec : {kCq2, kCq1}) sidecars.push_back(testing::write_cq_sidecar(*model, spec));
    // Every level the teal switch takes.
    std::vector<double> levels;
    for (const std::string& v : find_switch("teal").values)
      if (v != "off") levels.push_back(std::stod(v));
    sidecars.push_back(testing::write_teal_sidecar(*model, levels));
  }
  ~QuantizedTiny() {
    std::filesystem::remove(path);
    for (const auto& s : sidecars) std::filesystem::remove(s);
  }
};

const Model& tiny_q8() {
  static QuantizedTiny t;
  return *t.model;
}

std::vector<int32_t> prompt() {
  return tiny_q8().tokenizer().encode("The cat sat on the mat and looked at the birds in the garden", true, false);
}

EngineConfig config_with(const SwitchSetting& s) {
  EngineConfig c;
  c.n_threads = 2;
  if (!s.name.empty()) apply_switch(c, s);
  // CQ reads codes past the first block (the sink) and before the last
  // cq_window rows: a window of 4 leaves the walk's prompt rows to code.
  if (is_cq(c.k_type)) c.cq_window = 4;
  return c;
}

// What a host shows: its reported value of the switch, every logit of the
// prompt (or per-token log-probs for the server), and a seeded sample.
struct Observed {
  std::string reported;
  std::vector<float> numbers;
  std::vector<int32_t> draws;
  // The scheduler's greedy tokens, one per position of `numbers` (equal
  // shares): once two runs pick different tokens, the later positions see
  // other contexts and their numbers are not comparable.
  std::vector<int32_t> greedy = {};
};

GenerateOptions seeded(int n) {
  GenerateOptions g;
  g.max_tokens = n;
  g.sampling.temperature = 1.0f;
  g.sampling.top_k = 0;
  g.sampling.top_p = 1.0f;
  g.sampling.min_p = 0.0f;
  g.sampling.seed = 1234;
  g.stop_at_eog = false;
  return g;
}

Observed via_session(const SwitchSpec& spec, const SwitchSetting& s) {
  SessionOptions so;
  so.n_ctx = 128;
  so.engine = config_with(s);
  Session session(tiny_q8(), so);
  Observed o;
  o.reported = spec.current(session.config());
  o.numbers = session.append_all_logits(prompt());
  session.clear();
  o.draws = generate(session, prompt(), seeded(12)).tokens;
  return o;
}

Observed via_scheduler(const SwitchSpec& spec, const SwitchSetting& s) {
  SchedulerOptions so;
  so.n_slots = 1;
  so.n_ctx_slot = 128;
  so.engine = config_with(s);
  Scheduler sched(tiny_q8(), so);
  Observed o;
  o.reported = spec.current(sched.config());
  auto run = [&](int n_logprobs, bool greedy) {
    std::promise<std::vector<TokenLogprob>> lps_done;
    std::promise<std::vector<int32_t>> tokens_done;
    std::vector<TokenLogprob> lps;
    CompletionRequest req;
    req.prompt = prompt();
    req.gen = seeded(12);
    if (greedy) req.gen.sampling.temperature = 0.0f;
    req.n_logprobs = n_logprobs;
    req.reuse_prefix = false;
    req.on_event = [&](CompletionEvent&& ev) {
      for (auto& l : ev.logprobs) lps.push_back(std::move(l));
      if (ev.done) {
        lps_done.set_value(lps);
        tokens_done.set_value(ev.result.tokens);
      }
      return true;
    };
    auto lf = lps_done.get_future();
    auto tf = tokens_done.get_future();
    EXPECT_EQ(sched.submit(std::move(req)).status, SubmitStatus::Accepted);
    return std::make_pair(lf.get(), tf.get());
  };
  // Numbers: greedy log-probs (top 20 of every position; greedy tokens do not
  // move with float rounding). Draws: a seeded sample.
  const auto [greedy_lps, greedy_tokens] = run(20, true);
  for (const auto& l : greedy_lps)
    for (const auto& [id, lp] : l.top) o.numbers.push_back(lp);
  o.greedy = greedy_tokens;
  o.draws = run(0, false).second;
  return o;
}

Observed via_perplexity(const SwitchSpec& spec, const SwitchSetting& s) {
  const std::vector<int32_t> tokens = tiny_q8().tokenizer().encode(testing::tiny_text(), true, false);
  PerplexityOptions po;
  po.n_ctx = 64;
  po.n_chunks = 2;
  po.n_batch = 64;
  po.engine = config_with(s);
  const PerplexityResult r = run_perplexity(tiny_q8(), tokens, po);
  Observed o;
  o.reported = spec.current(r.engine);
  o.numbers = {static_cast<float>(r.nll_sum)};
  return o;
}

std::string via_bench(const SwitchSpec& spec, const SwitchSetting& s) {
  BenchCase c;
  c.n_gen = 2;
  c.reps = 1;
  c.warmup = false;
  c.switches = {{"threads", "2"}};
  if (!s.name.empty() && s.name != "threads") c.switches.push_back(s);
  if (s.name == "threads") c.switches = {s};
  const BenchResult r = run_bench(tiny_q8(), describe_model(tiny_q8(), "tiny"), c);
  return spec.current(r.engine);
}

void expect_effect(SwitchEffect effect, const Observed& base, const Observed& got, const std::string& where,
                   double bound = kLogitsBound) {
  ASSERT_EQ(base.numbers.size(), got.numbers.size()) << where;
  const bool same_numbers = base.numbers == got.numbers;
  switch (effect) {
    case SwitchEffect::Evicts: {
      // The prompt's logits: all of the session's; the scheduler's first
      // position (later ones follow decode steps over the evicted heads).
      const size_t n = base.greedy.empty() ? base.numbers.size() : base.numbers.size() / base.greedy.size();
      EXPECT_TRUE(
          std::equal(base.numbers.begin(), base.numbers.begin() + static_cast<std::ptrdiff_t>(n), got.numbers.begin()))
          << where << ": the prompt's logits moved, but eviction comes after them";
      break;
    }
    case SwitchEffect::Logits:
    case SwitchEffect::Kernels: {
      if (effect == SwitchEffect::Logits) {
        EXPECT_FALSE(same_numbers) << where << ": identical numbers, the switch did not reach the kernels";
      }
      // Teacher-forced numbers only: up to the first position where the greedy
      // paths part (that position's numbers still follow the same context).
      size_t n_cmp = base.numbers.size();
      if (!base.greedy.empty() && base.greedy.size() == got.greedy.size()) {
        const size_t per = base.numbers.size() / base.greedy.size();
        for (size_t i = 0; i < base.greedy.size(); ++i)
          if (base.greedy[i] != got.greedy[i]) {
            n_cmp = (i + 1) * per;
            break;
          }
      }
      double worst = 0, mag = 1;
      for (size_t i = 0; i < n_cmp; ++i) {
        worst = std::max(worst, static_cast<double>(std::fabs(base.numbers[i] - got.numbers[i])));
        mag = std::max(mag, static_cast<double>(std::fabs(base.numbers[i])));
      }
      // kLogitsBound for the switches exact up to float rounding or F16
      // storage; a switch that stores or computes in fewer bits declares its
      // own (SwitchSpec::logits_bound, with the reason).
      EXPECT_LT(worst, bound * mag) << where << ": max |diff| " << worst << " of max |number| " << mag;
      break;
    }
    case SwitchEffect::Thins:
      if (!base.greedy.empty()) {  // the scheduler: the first position is the prompt's last row
        const size_t per = base.numbers.size() / base.greedy.size();
        EXPECT_TRUE(std::equal(base.numbers.begin(), base.numbers.begin() + static_cast<std::ptrdiff_t>(per),
                               got.numbers.begin()))
            << where << ": the prompt's last row moved";
        EXPECT_FALSE(same_numbers) << where << ": the decode steps were not thinned";
      } else if (!base.draws.empty()) {  // the session's numbers are the prompt's logits
        EXPECT_TRUE(same_numbers) << where << ": a prompt's logits moved";
      } else {  // perplexity scores every token as decoded
        EXPECT_FALSE(same_numbers) << where << ": perplexity did not score the tokens as decoded";
      }
      break;
    case SwitchEffect::Draws:
      EXPECT_TRUE(same_numbers) << where;
      if (!base.draws.empty()) EXPECT_NE(base.draws, got.draws) << where << ": same draws, the sampler did not change";
      break;
    case SwitchEffect::Speed:
      EXPECT_TRUE(same_numbers) << where;
      EXPECT_EQ(base.draws, got.draws) << where;
      break;
  }
}

// A prompt longer than the protected window: 200 tokens of the tiny vocabulary.
std::vector<int32_t> long_prompt() {
  std::vector<int32_t> p;
  for (int i = 0; i < 200; ++i) p.push_back(3 + (i * 7) % 50);
  return p;
}

// Session and Scheduler with `s` against the baseline on long_prompt().
void expect_eviction(const SwitchSetting& s, const std::string& where) {
  SessionOptions so;
  so.n_ctx = 256;
  so.engine = config_with({});
  Session base(tiny_q8(), so);
  so.engine = config_with(s);
  Session evicting(tiny_q8(), so);
  const auto lb = base.set_history(long_prompt());
  const std::vector<float> base_prompt(lb.begin(), lb.end());
  const auto le = evicting.set_history(long_prompt());
  EXPECT_EQ(std::vector<float>(le.begin(), le.end()), base_prompt) << where << " (session): the prompt's logits";
  EXPECT_GT(evicting.evicted_blocks(), 0) << where << " (session)";
  EXPECT_LT(evicting.cache().used_blocks(), base.cache().used_blocks()) << where << " (session)";
  const int32_t next = 5;
  const auto db = base.append(std::span<const int32_t>(&next, 1));
  const std::vector<float> base_decode(db.begin(), db.end());
  const auto de = evicting.append(std::span<const int32_t>(&next, 1));
  EXPECT_NE(std::vector<float>(de.begin(), de.end()), base_decode) << where << " (session): decode ignored eviction";

  auto first_logprobs = [&](const EngineConfig& engine, SchedulerStats& stats) {
    SchedulerOptions o;
    o.n_slots = 1;
    o.n_ctx_slot = 256;
    o.engine = engine;
    Scheduler sched(tiny_q8(), o);
    std::promise<std::vector<float>> done;
    std::vector<float> first;
    CompletionRequest req;
    req.prompt = long_prompt();
    req.gen = seeded(2);
    req.gen.sampling.temperature = 0.0f;
    req.n_logprobs = 20;
    req.on_event = [&](CompletionEvent&& ev) {
      for (const auto& l : ev.logprobs)
        if (first.empty())
          for (const auto& [id, lp] : l.top) first.push_back(lp);
      if (ev.done) done.set_value(first);
      return true;
    };
    auto f = done.get_future();
    EXPECT_EQ(sched.submit(std::move(req)).status, SubmitStatus::Accepted);
    auto out = f.get();
    stats = sched.stats();
    return out;
  };
  SchedulerStats base_stats, stats;
  const auto base_first = first_logprobs(config_with({}), base_stats);
  const auto first = first_logprobs(config_with(s), stats);
  EXPECT_EQ(first, base_first) << where << " (scheduler): the first token's log-probs come before eviction";
  EXPECT_EQ(base_stats.kvcompress_head_blocks_evicted, 0u) << where;
  EXPECT_GT(stats.kvcompress_head_blocks_evicted, 0u) << where << " (scheduler)";
  EXPECT_GT(stats.kvcompress_head_blocks_freed, 0u) << where << " (scheduler)";

  try {
    (void)via_perplexity(find_switch(s.name), s);
    ADD_FAILURE() << where << " (perplexity): accepted, but one pass per chunk evicts nothing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kestrel longeval --ppl"), std::string::npos) << e.what();
  }
}

TEST(SwitchHosts, EveryRunnableValueReachesEveryHost) {
  const SwitchSetting none{};
  const Observed base_session = via_session(switch_specs()[0], none);
  const Observed base_sched = via_scheduler(switch_specs()[0], none);
  const Observed base_ppl = via_perplexity(switch_specs()[0], none);
  int walked = 0;
  for (const SwitchSpec& spec : switch_specs()) {
    std::vector<std::string> values = spec.values;
    if (values.empty()) values = {"1"};  // integer switches (threads): one value other than the default 2
    for (const std::string& value : values) {
      const SwitchSetting s{spec.name, value};
      const std::string where = s.label();
      if (!spec.unsupported(value).empty()) {
        GTEST_LOG_(INFO) << where << " skipped: " << spec.unsupported(value);
        continue;
      }
      const std::string expected = spec.current(config_with(s));
      if (expected == spec.current(config_with(none))) continue;  // the default itself
      ++walked;
      SCOPED_TRACE(where);
      const SwitchEffect effect = spec.effect(value);

      const Observed session = via_session(spec, s);
      EXPECT_EQ(session.reported, expected) << where << " (session)";
      const double bound = logits_bound(spec, value);
      expect_effect(effect, base_session, session, where + " (session)", bound);

      const Observed sched = via_scheduler(spec, s);
      EXPECT_EQ(sched.reported, expected) << where << " (scheduler)";
      expect_effect(effect, base_sched, sched, where + " (scheduler)", bound);

      if (effect == SwitchEffect::Evicts) {
        expect_eviction(s, where);
      } else {
        const Observed ppl = via_perplexity(spec, s);
        EXPECT_EQ(ppl.reported, expected) << where << " (perplexity)";
        expect_effect(effect, Observed{"", base_ppl.numbers, {}}, Observed{"", ppl.numbers, {}},
                      where + " (perplexity)", bound);
      }

      EXPECT_EQ(via_bench(spec, s), expected) << where << " (bench)";
    }
  }
  // kv=f32, matmul=vecdot, threads=1, sampling=sort and a lower isa run on any x86-64 with AVX2.
  EXPECT_GE(walked, 4);
}

TEST(SwitchHosts, DefaultsAreReportedResolved) {
  SessionOptions so;
  so.n_ctx = 32;
  Session session(tiny_q8(), so);
  EXPECT_GE(session.config().n_threads, 1);
  EXPECT_TRUE(isa_supported(session.config().isa));
  const std::string text = engine_settings_text(session.config());
  for (const auto& spec : switch_specs()) EXPECT_NE(text.find(spec.name + "="), std::string::npos) << text;
}

TEST(SwitchHosts, OneSwitchSetTwiceWithDifferentValuesIsRefused) {
  EngineConfig c;
  EXPECT_THROW(apply_switches(c, {{"threads", "2"}, {"threads", "1"}}), Error);
  EXPECT_NO_THROW(apply_switches(c, {{"kv", "f32"}, {"kv", "f32"}}));
  EXPECT_THROW(apply_switch(c, {"kv", "q9_9"}), Error);
  // kv sets K and V: kv_k or kv_v given with another value is the same slot set twice.
  EngineConfig d;
  EXPECT_THROW(apply_switches(d, {{"kv", "q8_0"}, {"kv_k", "q4_0"}}), Error);
  EXPECT_THROW(apply_switches(d, {{"kv_v", "q4_0"}, {"kv", "q8_0"}}), Error);
  EngineConfig e;
  EXPECT_NO_THROW(apply_switches(e, {{"kv", "q8_0"}, {"kv_k", "q8_0"}}));
  EngineConfig f;
  apply_switches(f, {{"kv_k", "q8_0"}, {"kv_v", "q4_0"}});
  EXPECT_EQ(f.k_type, DType::Q8_0);
  EXPECT_EQ(f.v_type, DType::Q4_0);
  EXPECT_EQ(kv_value(f), "q8_0/q4_0");
  EXPECT_THROW(apply_switch(c, {"nope", "1"}), Error);
}

TEST(SwitchHosts, MatmulSwitchPacksOnlyOnThePanelPath) {
  if (!kernels::panel_gemm(DType::Q8_0, best_isa())) GTEST_SKIP() << "no panel kernel for this CPU (they need AVX2 or AVX-512)";
  // A model of its own: packing happens once per model.
  testing::LoadedTinyModel f32("switch_pack");
  const std::string q8 = f32.path + ".q8_0.gguf";
  QuantizeOptions qo;
  qo.type = DType::Q8_0;
  qo.pure = true;
  quantize_model(f32.path, q8, qo);
  const auto model = load_model(q8);
  const size_t before = packed_weight_bytes();
  SessionOptions so;
  so.n_ctx = 32;
  so.engine = config_with({"matmul", "vecdot"});
  { Session vecdot(*model, so); }
  EXPECT_EQ(packed_weight_bytes(), before) << "vec_dot must not pack weights";
  so.engine = config_with({"matmul", "panels"});
  Session panels(*model, so);
  EXPECT_GT(packed_weight_bytes(), before) << "the panel path packs the weights it uses";
  std::filesystem::remove(q8);
}

}  // namespace
}  // namespace kestrel
