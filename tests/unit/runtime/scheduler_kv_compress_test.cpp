// The Scheduler with KV-Compress (runtime/scheduler.h): a slot is compressed
// once its prompt is in, the blocks it gives back admit another request the
// pool could not hold before, a budget bounds what a decoding slot holds, and
// a compressed slot's cache is not reused as a prefix.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>

#include "runtime/scheduler.h"
#include "unit/runtime/greedy_options.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

testing::LoadedTinyModel& tiny() {
  static testing::LoadedTinyModel l("sched_kvc");
  return l;
}

std::vector<int32_t> prompt_of(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(3 + (i * 7 + salt * 13) % 50);
  return p;
}

using testing::greedy;

// One request's events in the order of all requests' events (the engine
// thread calls them one at a time).
struct Log {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> order;  // "A token", "B done", ...
  std::map<std::string, CompletionResult> results;

  std::function<bool(CompletionEvent&&)> sink(const std::string& name, std::function<void()> on_token = {}) {
    return [this, name, on_token](CompletionEvent&& ev) {
      if (on_token && !ev.done) on_token();
      std::lock_guard<std::mutex> lk(mu);
      order.push_back(name + (ev.done ? " done" : " token"));
      if (ev.done) {
        results[name] = ev.result;
        cv.notify_all();
      }
      return true;
    };
  }
  void wait(size_t n) {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return results.size() == n; });
  }
  size_t first(const std::string& what) const {
    return static_cast<size_t>(std::find(order.begin(), order.end(), what) - order.begin());
  }
};

// One request alone: submitted, waited for, its result.
CompletionResult run_alone(Scheduler& sched, std::vector<int32_t> prompt, int max_tokens) {
  Log log;
  CompletionRequest r;
  r.prompt = std::move(prompt);
  r.gen = greedy(max_tokens);
  r.on_event = log.sink("A");
  EXPECT_EQ(sched.submit(std::move(r)).status, SubmitStatus::Accepted);
  log.wait(1);
  return log.results["A"];
}

SchedulerOptions options(const KvCompressConfig& kvc, int64_t pool_positions) {
  SchedulerOptions o;
  o.n_slots = 2;
  o.n_ctx_slot = 256;
  o.n_ctx_total = pool_positions;
  o.prefill_chunk = 128;
  o.engine.n_threads = 1;
  o.engine.kv_compress = kvc;
  return o;
}

// Two requests of 200 prompt tokens + 40: 15 blocks of 16 positions each, in
// a pool of 22. Without eviction B waits for A to end; with kvcompress=4, A
// keeps 7 of its 26 (layer, head) blocks after its prompt, and B (whose prompt
// alone needs 13 of the 22 blocks, with A's 13) runs beside A: in blocks A gave back.
TEST(SchedulerKvCompress, BlocksFreedByOneSlotAdmitAnother) {
  const KvCompressConfig off{}, rate4{KvCompressConfig::Mode::Metric, 4, 0};
  for (const KvCompressConfig& kvc : {off, rate4}) {
    Scheduler sched(*tiny().model, options(kvc, 22 * 16));
    Log log;
    for (const char* name : {"A", "B"}) {
      CompletionRequest r;
      r.prompt = prompt_of(200, name[0]);
      r.gen = greedy(40);
      r.on_event = log.sink(name);
      ASSERT_EQ(sched.submit(std::move(r)).status, SubmitStatus::Accepted);
    }
    log.wait(2);
    EXPECT_EQ(log.results["A"].tokens.size(), 40u);
    EXPECT_EQ(log.results["B"].tokens.size(), 40u);
    const SchedulerStats st = sched.stats();
    if (kvc.mode == KvCompressConfig::Mode::Off) {
      EXPECT_GT(log.first("B token"), log.first("A done")) << "without eviction the pool holds one request";
      EXPECT_EQ(st.kvcompress_head_blocks_evicted, 0u);
    } else {
      EXPECT_LT(log.first("B token"), log.first("A done")) << "B ran beside A in the blocks A's eviction freed";
      // 26 blocks each, 7 kept: 19 evicted per request, none shared.
      EXPECT_EQ(st.kvcompress_head_blocks_evicted, 38u);
      EXPECT_EQ(st.kvcompress_head_blocks_freed, 38u);
      EXPECT_EQ(st.kvcompress_runs, 2u);
    }
  }
}

// The scheduler's compressed slot generates what a Session with the same
// switch generates (same prompt batches of 128, same evictions).
TEST(SchedulerKvCompress, GeneratesWhatASessionWithTheSameSwitchGenerates) {
  const KvCompressConfig rate4{KvCompressConfig::Mode::Metric, 4, 0};
  Scheduler sched(*tiny().model, options(rate4, 0));
  const CompletionResult got = run_alone(sched, prompt_of(200, 1), 24);

  SessionOptions so;
  so.n_ctx = 256;
  so.n_batch = 128;
  so.engine.n_threads = 1;
  so.engine.kv_compress = rate4;
  Session session(*tiny().model, so);
  const std::vector<int32_t> want = generate(session, prompt_of(200, 1), greedy(24)).tokens;
  EXPECT_GT(session.evicted_blocks(), 0);
  EXPECT_EQ(got.tokens, want);
  // Without eviction the text differs: the comparison above is not vacuous.
  SessionOptions plain = so;
  plain.engine.kv_compress = {};
  Session full(*tiny().model, plain);
  EXPECT_NE(generate(full, prompt_of(200, 1), greedy(24)).tokens, want);
}

// kv_budget=48 alone: after its prompt, and at every decode step, the slot
// holds at most: the budget's 3 blocks per head, or the 4 that are never
// evicted (the protected 32 positions, the block holding the end, a window's
// first block) if more, plus one block per head of slack before decode evicts
// again and one for the step that crosses it: 6 blocks.
TEST(SchedulerKvCompress, ABudgetBoundsWhatADecodingSlotHolds) {
  const KvCompressConfig budget{KvCompressConfig::Mode::Off, 0, 48};
  SchedulerOptions o = options(budget, 0);
  o.n_slots = 1;
  o.n_ctx_slot = 400;
  Scheduler sched(*tiny().model, o);
  Log log;
  int64_t most = 0;
  int tokens = 0;
  CompletionRequest r;
  r.prompt = prompt_of(200, 2);
  r.gen = greedy(150);
  r.on_event = log.sink("A", [&] {
    most = std::max(most, sched.stats().kv_blocks_in_use);
    ++tokens;
  });
  ASSERT_EQ(sched.submit(std::move(r)).status, SubmitStatus::Accepted);
  log.wait(1);
  EXPECT_EQ(log.results["A"].tokens.size(), 150u);
  EXPECT_GT(tokens, 100);
  EXPECT_LE(most, 6) << "without the budget the slot would reach " << (200 + 150 + 15) / 16 << " blocks";
  EXPECT_GE(most, 3);
  // Evicted after the prompt, then again as decode passed the budget.
  EXPECT_GE(sched.stats().kvcompress_runs, 3u);
}

// Under a budget a request is reserved its prompt, then the budget's cap: a
// request whose prompt + max_tokens exceeds the pool is still accepted.
TEST(SchedulerKvCompress, ABudgetReservesThePromptNotPromptPlusMaxTokens) {
  SchedulerOptions o = options({KvCompressConfig::Mode::Off, 0, 48}, 16 * 16);
  o.n_slots = 1;
  o.n_ctx_slot = 512;
  Scheduler sched(*tiny().model, o);
  // 13 blocks of prompt, 25 without eviction once 200 tokens are generated: more than the pool's 16.
  const CompletionResult got = run_alone(sched, prompt_of(200, 3), 200);
  EXPECT_EQ(got.finish_reason, "length");
  EXPECT_EQ(got.tokens.size(), 200u);

  SchedulerOptions plain = o;
  plain.engine.kv_compress = {};
  Scheduler without(*tiny().model, plain);
  CompletionRequest q;
  q.prompt = prompt_of(200, 3);
  q.gen = greedy(200);
  const SubmitResult refused = without.submit(std::move(q));
  EXPECT_EQ(refused.status, SubmitStatus::Invalid);
  EXPECT_NE(refused.message.find("kv cache too small"), std::string::npos) << refused.message;
}

// A compressed slot's cache is cleared when its request ends: the same prompt
// again is evaluated in full (no cached tokens) and gives the same tokens.
TEST(SchedulerKvCompress, ACompressedSlotIsNotReusedAsAPrefix) {
  Scheduler sched(*tiny().model, options({KvCompressConfig::Mode::Window, 0, 0}, 0));
  std::vector<CompletionResult> results;
  for (int i = 0; i < 2; ++i) {
    results.push_back(run_alone(sched, prompt_of(200, 4), 8));
    EXPECT_EQ(sched.stats().kv_blocks_cached, 0) << "a compressed slot keeps nothing for reuse";
  }
  EXPECT_EQ(results[1].cached_tokens, 0);
  EXPECT_EQ(results[1].tokens, results[0].tokens);
  EXPECT_EQ(sched.stats().kvcompress_runs, 2u);
}

}  // namespace
}  // namespace kestrel
