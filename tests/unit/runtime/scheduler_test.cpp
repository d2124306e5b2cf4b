// Continuous batching on the tiny model: several requests decoded together in
// one batch (with chunked prefill) must give, token for token, what a
// single-sequence Session gives each of them alone (greedy). Also prefix reuse,
// queue limits, cancellation, stop strings and context overflow.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

testing::LoadedTinyModel& tiny() {
  static testing::LoadedTinyModel l("sched");
  return l;
}

// Gathers one request's events; wait() blocks until the last one.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::string streamed;
  std::vector<TokenLogprob> logprobs;
  bool done = false;
  CompletionResult result;
  int events = 0;
  bool cancel_after_first = false;

  std::function<bool(CompletionEvent&&)> sink() {
    return [this](CompletionEvent&& ev) {
      std::lock_guard<std::mutex> lk(mu);
      ++events;
      streamed += ev.text;
      for (auto& l : ev.logprobs) logprobs.push_back(l);
      if (ev.done) {
        done = true;
        result = ev.result;
        cv.notify_all();
      }
      return !cancel_after_first;
    };
  }
  CompletionResult wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done; });
    return result;
  }
};

GenerateOptions greedy(int max_tokens) {
  GenerateOptions g;
  g.max_tokens = max_tokens;
  g.sampling.temperature = 0.0f;
  g.stop_at_eog = false;
  return g;
}

std::vector<int32_t> reference_tokens(const std::vector<int32_t>& prompt, const GenerateOptions& g) {
  SessionOptions so;
  so.n_ctx = 256;
  so.n_threads = 1;
  Session session(*tiny().model, so);
  return generate(session, prompt, g).tokens;
}

SchedulerOptions opts(int n_slots, int chunk, int max_queue = 16) {
  SchedulerOptions o;
  o.n_slots = n_slots;
  o.n_ctx_slot = 256;
  o.n_threads = 1;
  o.prefill_chunk = chunk;
  o.max_queue = max_queue;
  return o;
}

std::vector<int32_t> encode(const std::string& s) { return tiny().model->tokenizer().encode(s, true, false); }

TEST(Scheduler, BatchedRequestsMatchSingleSequenceGeneration) {
  const std::vector<std::string> prompts = {"The cat sat on the mat", "It was a warm afternoon, and the wind",
                                            "Over the fence, a dog barked at a passing car, then lay down",
                                            "When the sun went down"};
  Scheduler sched(*tiny().model, opts(3, 7));  // 4 requests on 3 slots: one waits
  std::vector<Collector> c(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    CompletionRequest r;
    r.prompt = encode(prompts[i]);
    r.gen = greedy(12 + static_cast<int>(i));
    r.on_event = c[i].sink();
    ASSERT_EQ(sched.submit(std::move(r)).status, SubmitStatus::Accepted);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const CompletionResult res = c[i].wait();
    const auto want = reference_tokens(encode(prompts[i]), greedy(12 + static_cast<int>(i)));
    EXPECT_EQ(res.tokens, want) << "request " << i;
    EXPECT_EQ(res.finish_reason, "length");
    EXPECT_EQ(res.text, tiny().model->tokenizer().decode(want));
    EXPECT_EQ(c[i].streamed, res.text);
    EXPECT_EQ(res.prompt_tokens, static_cast<int64_t>(encode(prompts[i]).size()));
  }
  const auto st = sched.stats();
  EXPECT_EQ(st.slots_in_use, 0);
  EXPECT_EQ(st.requests_finished, prompts.size());
  EXPECT_TRUE(sched.idle());
}

TEST(Scheduler, ReusesTheLongestCachedPrefix) {
  Scheduler sched(*tiny().model, opts(2, 64));
  const auto system = encode("The children came home from school, threw their bags on the floor");
  auto run = [&](const std::vector<int32_t>& prompt) {
    Collector c;
    CompletionRequest r;
    r.prompt = prompt;
    r.gen = greedy(4);
    r.on_event = c.sink();
    EXPECT_EQ(sched.submit(std::move(r)).status, SubmitStatus::Accepted);
    return c.wait();
  };
  auto other = encode("Their mother called them back for tea");
  run(system);
  run(other);  // goes to the other (empty) slot: no common prefix with `system`
  auto longer = system;
  const auto tail = encode(" and ran outside to play");
  longer.insert(longer.end(), tail.begin(), tail.end());
  const CompletionResult r = run(longer);
  EXPECT_EQ(r.cached_tokens, static_cast<int64_t>(system.size()));
  EXPECT_EQ(r.tokens, reference_tokens(longer, greedy(4)));
  // The very same prompt again: everything but the last token is reused.
  const CompletionResult again = run(longer);
  EXPECT_EQ(again.cached_tokens, static_cast<int64_t>(longer.size()) - 1);
  EXPECT_EQ(again.tokens, r.tokens);
  EXPECT_EQ(sched.stats().prompt_tokens_cached, system.size() + longer.size() - 1);
  // Reuse turned off: the whole prompt is evaluated again, in a free slot.
  Collector c;
  CompletionRequest r2;
  r2.prompt = longer;
  r2.gen = greedy(4);
  r2.reuse_prefix = false;
  r2.on_event = c.sink();
  ASSERT_EQ(sched.submit(std::move(r2)).status, SubmitStatus::Accepted);
  EXPECT_EQ(c.wait().cached_tokens, 0);
  EXPECT_EQ(c.result.tokens, r.tokens);
}

TEST(Scheduler, RejectsContextOverflowWithTheNumbers) {
  Scheduler sched(*tiny().model, opts(1, 16));
  CompletionRequest r;
  r.prompt = encode("The cat sat on the mat");
  r.gen = greedy(300);
  const auto res = sched.submit(std::move(r));
  EXPECT_EQ(res.status, SubmitStatus::Invalid);
  EXPECT_NE(res.message.find("context overflow"), std::string::npos) << res.message;
  EXPECT_NE(res.message.find("256"), std::string::npos) << res.message;
  EXPECT_NE(res.message.find("300"), std::string::npos) << res.message;

  CompletionRequest empty;
  empty.gen = greedy(4);
  EXPECT_EQ(sched.submit(std::move(empty)).status, SubmitStatus::Invalid);
  CompletionRequest bad;
  bad.prompt = {1, 2, 99999};
  bad.gen = greedy(4);
  EXPECT_EQ(sched.submit(std::move(bad)).status, SubmitStatus::Invalid);
}

TEST(Scheduler, FullQueueRefusesAndCancelFreesTheSlot) {
  Scheduler sched(*tiny().model, opts(1, 16, 1));
  // The first request blocks the engine thread inside its first event until
  // released, so the slot is busy while the others are submitted.
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  Collector first;
  CompletionRequest r1;
  r1.prompt = encode("The cat");
  r1.gen = greedy(50);
  auto inner = first.sink();
  r1.on_event = [&, inner](CompletionEvent&& ev) {
    std::unique_lock<std::mutex> lk(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lk, [&] { return release; });
    lk.unlock();
    return inner(std::move(ev));
  };
  ASSERT_EQ(sched.submit(std::move(r1)).status, SubmitStatus::Accepted);
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return entered; });
  }
  Collector second, third;
  CompletionRequest r2;
  r2.prompt = encode("The dog");
  r2.gen = greedy(3);
  r2.on_event = second.sink();
  const auto s2 = sched.submit(std::move(r2));
  EXPECT_EQ(s2.status, SubmitStatus::Accepted);
  CompletionRequest r3;
  r3.prompt = encode("The bird");
  r3.gen = greedy(3);
  r3.on_event = third.sink();
  EXPECT_EQ(sched.submit(std::move(r3)).status, SubmitStatus::QueueFull);
  EXPECT_EQ(sched.stats().queue_depth, 1);
  EXPECT_EQ(sched.stats().slots_in_use, 1);

  sched.cancel(1);  // the running one
  {
    std::lock_guard<std::mutex> lk(mu);
    release = true;
  }
  cv.notify_all();
  EXPECT_EQ(first.wait().finish_reason, "cancelled");
  EXPECT_LT(first.result.tokens.size(), 50u);
  EXPECT_EQ(second.wait().finish_reason, "length");
  EXPECT_EQ(second.result.tokens.size(), 3u);

  // A callback returning false cancels too.
  Collector quitter;
  quitter.cancel_after_first = true;
  CompletionRequest r4;
  r4.prompt = encode("The fish");
  r4.gen = greedy(40);
  r4.on_event = quitter.sink();
  ASSERT_EQ(sched.submit(std::move(r4)).status, SubmitStatus::Accepted);
  EXPECT_EQ(quitter.wait().finish_reason, "cancelled");
  EXPECT_EQ(sched.stats().slots_in_use, 0);

  sched.begin_drain();
  CompletionRequest r5;
  r5.prompt = encode("The end");
  r5.gen = greedy(3);
  EXPECT_EQ(sched.submit(std::move(r5)).status, SubmitStatus::ShuttingDown);
}

TEST(Scheduler, StopStringCutsTheTextAndLogprobsAreNormalised) {
  Scheduler sched(*tiny().model, opts(2, 32));
  const auto prompt = encode("The cat sat on the mat and looked at");
  const auto want = reference_tokens(prompt, greedy(16));
  const std::string full = tiny().model->tokenizer().decode(want);
  ASSERT_GE(full.size(), 6u);
  const std::string stop = full.substr(3, 2);  // some text in the middle
  Collector c;
  CompletionRequest r;
  r.prompt = prompt;
  r.gen = greedy(16);
  r.gen.stop = {stop};
  r.n_logprobs = 3;
  r.on_event = c.sink();
  ASSERT_EQ(sched.submit(std::move(r)).status, SubmitStatus::Accepted);
  const auto res = c.wait();
  EXPECT_EQ(res.finish_reason, "stop");
  EXPECT_EQ(res.text, full.substr(0, full.find(stop)));
  EXPECT_EQ(c.streamed, res.text);
  ASSERT_EQ(c.logprobs.size(), res.tokens.size());
  for (const auto& lp : c.logprobs) {
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_LE(lp.logprob, 0.0f);
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(lp.top[0].first, lp.token);
    EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);
    EXPECT_GE(lp.top[0].second, lp.top[1].second);
  }
}

}  // namespace
}  // namespace kestrel
