// The accuracy guard's running check: on the exact path it sees nothing; in
// the scheduler a lossy KV cache over a tight budget is turned off for the
// requests after the running one, while a budget it meets leaves it on.
#include "runtime/running_check.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "core/error.h"
#include "runtime/scheduler.h"
#include "unit/runtime/greedy_options.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

testing::LoadedTinyModel& tiny() {
  static testing::LoadedTinyModel l("running_check");
  return l;
}

std::vector<int32_t> encode(const std::string& s) { return tiny().model->tokenizer().encode(s, true, false); }

// Decode steps of a Session, fed to the check as a slot would feed them.
RunningCheck::Figures check_session(const EngineConfig& run, const RunningCheckOptions& o, int steps,
                                    std::optional<double> step_seconds = std::nullopt) {
  RunningCheck check(*tiny().model, o);
  SessionOptions so;
  so.n_ctx = 256;
  so.engine = run;
  Session s(*tiny().model, so);
  std::vector<int32_t> history = encode(testing::tiny_text());
  history.resize(60);
  std::span<const float> logits = s.set_history(history);
  for (int i = 0; i < steps; ++i) {
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    history.push_back(next);
    logits = s.decode(next);
    check.observe(7, history, logits, step_seconds);
  }
  return check.figures();
}

// One thread, 256 positions, a check every `every` steps of one request in `follow_every`.
RunningCheckOptions options(int every, int follow_every) {
  RunningCheckOptions o;
  o.every = every;
  o.follow_every = follow_every;
  o.exact.n_threads = 1;
  o.n_ctx = 256;
  return o;
}

TEST(RunningCheck, SeesNothingOnTheExactPathAndTheCacheErrorOtherwise) {
  RunningCheckOptions o = options(3, 1);
  o.min_checks = 1;
  const RunningCheck::Figures same = check_session(o.exact, o, 12);
  EXPECT_EQ(same.checks, 4);  // one decode step in three
  EXPECT_LT(same.kld, 1e-9);  // a decode step against a prompt pass: rounding at most
  EXPECT_EQ(same.top1, 1.0);
  EngineConfig q4 = o.exact;
  q4.k_type = q4.v_type = DType::Q4_0;
  const RunningCheck::Figures lossy = check_session(q4, o, 12);
  EXPECT_EQ(lossy.checks, 4);
  EXPECT_GT(lossy.kld, 1e-6);
}

// Rows that ran alone in their step are timed against the exact path's decode
// of the same token: speed-up = exact seconds / the step's. Told each step took
// 1000 s, the tiny model's exact decodes (well under a second) make it tiny.
TEST(RunningCheck, TimesTheExactDecodeOnlyOfRowsThatRanAlone) {
  const RunningCheckOptions o = options(2, 1);
  const RunningCheck::Figures untimed = check_session(o.exact, o, 8);
  EXPECT_EQ(untimed.checks, 4);
  EXPECT_EQ(untimed.timed, 0);
  EXPECT_EQ(untimed.speedup, 0.0);
  const RunningCheck::Figures timed = check_session(o.exact, o, 8, 1000.0);
  EXPECT_EQ(timed.checks, 4);
  EXPECT_EQ(timed.timed, 4);
  EXPECT_GT(timed.speedup, 0.0);
  EXPECT_LT(timed.speedup, 1.0 / 4000.0);
  EXPECT_LT(timed.kld, 1e-9);  // the timed decode is still the exact path's logits
}

// One request in follow_every is followed; the others are never recomputed.
TEST(RunningCheck, FollowsOneRequestInN) {
  const RunningCheckOptions o = options(1, 3);
  RunningCheck check(*tiny().model, o);
  std::vector<int32_t> history = encode(testing::tiny_text());
  history.resize(30);
  const std::vector<float> logits(static_cast<size_t>(tiny().model->config().n_vocab), 0.0f);
  std::vector<int> checked;
  for (uint64_t request = 1; request <= 6; ++request) {
    int n = 0;
    for (int step = 0; step < 3; ++step) n += check.observe(request, history, logits) ? 1 : 0;
    check.end(request);
    checked.push_back(n);
  }
  EXPECT_EQ(checked, (std::vector<int>{3, 0, 0, 3, 0, 0}));
}

TEST(RunningCheck, RefusesNonsense) {
  RunningCheckOptions o;
  o.every = 0;
  EXPECT_THROW(RunningCheck(*tiny().model, o), Error);
}

struct Done {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  CompletionResult result;
  std::function<bool(CompletionEvent&&)> sink() {
    return [this](CompletionEvent&& ev) {
      if (ev.done) {
        std::lock_guard<std::mutex> lk(mu);
        done = true;
        result = ev.result;
        cv.notify_all();
      }
      return true;
    };
  }
  CompletionResult wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done; });
    return result;
  }
};

// Runs two requests one after the other on a scheduler with kv=q4_0 and the
// running check; returns the configuration the second ran with and how often
// the scheduler asked to turn a switch off.
struct Served {
  EngineConfig config;  // of the second request
  int asked = 0;
  SchedulerStats stats;
};
Served serve_two(DType kv, double max_kld) {
  SchedulerOptions so;
  so.n_slots = 1;
  so.n_ctx_slot = 256;
  so.engine.n_threads = 1;
  so.engine.k_type = so.engine.v_type = kv;
  so.check.every = 1;
  so.check.min_checks = 4;
  so.check.follow_every = 1;
  so.check.budget.max_kld = max_kld;
  so.check.exact.n_threads = 1;
  std::atomic<int> asked{0};
  so.on_over_budget = [&](const std::string& why) -> std::optional<EngineConfig> {
    EXPECT_NE(why.find("KLD"), std::string::npos) << why;
    ++asked;
    EngineConfig exact;
    exact.n_threads = 1;
    return exact;
  };
  Scheduler sched(*tiny().model, so);
  for (int i = 0; i < 2; ++i) {
    Done d;
    CompletionRequest r;
    r.prompt = encode(testing::tiny_text());
    r.prompt.resize(40 + static_cast<size_t>(i));
    r.gen = testing::greedy(12);
    r.on_event = d.sink();
    if (sched.submit(std::move(r)).status != SubmitStatus::Accepted) {
      ADD_FAILURE() << "not accepted";
      return {};
    }
    EXPECT_EQ(d.wait().finish_reason, "length");
  }
  const SchedulerStats st = sched.stats();
  EXPECT_EQ(st.guard_reconfigurations, static_cast<uint64_t>(asked.load()));
  return {sched.config(), asked.load(), st};
}

TEST(RunningCheck, TurnsALossySwitchOffForNewRequestsOnlyWhenOverBudget) {
  // q4_0 K and V move the tiny model's distributions by KLD > 1e-6 (above);
  // the exact path's decode rows against its prompt pass by rounding only.
  const Served tight = serve_two(DType::Q4_0, 1e-7);
  EXPECT_EQ(tight.asked, 1);
  EXPECT_EQ(tight.config.k_type, DType::F16);
  EXPECT_EQ(tight.stats.guard_memory_ratio, 1.0);  // back on the exact path's cache
  const Served loose = serve_two(DType::Q4_0, 1e9);
  EXPECT_EQ(loose.asked, 0);
  EXPECT_EQ(loose.config.k_type, DType::Q4_0);
  const Served exact = serve_two(DType::F16, 1e-7);
  EXPECT_EQ(exact.asked, 0);
  EXPECT_EQ(exact.stats.guard_memory_ratio, 1.0);
  // One request at a time: every checked row ran alone and was timed.
  EXPECT_EQ(loose.stats.guard.timed, loose.stats.guard.checks);
  EXPECT_GT(loose.stats.guard.speedup, 0.0);
}

// The memory ratio is the layouts' (runtime/memory_footprint.h): q4_0 K and V
// against f16 over the pool the scheduler holds.
TEST(RunningCheck, ReportsTheMemoryOfTheRunningConfigurationAgainstTheExactPath) {
  const Served loose = serve_two(DType::Q4_0, 1e9);
  const ModelConfig& m = tiny().model->config();
  const double w = static_cast<double>(tiny().model->weight_bytes());
  const double per_pos = static_cast<double>(m.n_layer) * m.n_kv_head * 2;
  const double positions = 256;  // one slot of 256: whole blocks
  const double q4 = w + positions * per_pos * static_cast<double>(row_bytes(DType::Q4_0, m.head_dim));
  const double f16 = w + positions * per_pos * static_cast<double>(row_bytes(DType::F16, m.head_dim));
  EXPECT_NEAR(loose.stats.guard_memory_ratio, q4 / f16, 1e-12);
  EXPECT_LT(loose.stats.guard_memory_ratio, 1.0);
}

}  // namespace
}  // namespace kestrel
