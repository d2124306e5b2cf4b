// Continuous batching on the tiny model: several requests decoded together in
// one batch (with chunked prefill) must give, token for token, what a
// single-sequence Session gives each of them alone (greedy). Also prefix reuse,
// queue limits, cancellation, stop strings and context overflow.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <array>
#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "core/error.h"
#include "model/draft_vocab_sidecar.h"
#include "unit/runtime/greedy_options.h"
#include "unit/runtime/tiny_eagle3.h"
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

using testing::greedy;

std::vector<int32_t> reference_tokens(const std::vector<int32_t>& prompt, const GenerateOptions& g) {
  SessionOptions so;
  so.n_ctx = 256;
  so.engine.n_threads = 1;
  Session session(*tiny().model, so);
  return generate(session, prompt, g).tokens;
}

SchedulerOptions opts(int n_slots, int chunk, int max_queue = 16, int64_t n_ctx_total = 0) {
  SchedulerOptions o;
  o.n_ctx_total = n_ctx_total;
  o.n_slots = n_slots;
  o.n_ctx_slot = 256;
  o.engine.n_threads = 1;
  o.prefill_chunk = chunk;
  o.max_queue = max_queue;
  return o;
}

std::vector<int32_t> encode(const std::string& s) { return tiny().model->tokenizer().encode(s, true, false); }

int64_t blocks_for(int64_t positions) { return (positions + KvCache::kBlock - 1) / KvCache::kBlock; }

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t c = 0;
  while (c < a.size() && c < b.size() && a[c] == b[c]) ++c;
  return c;
}

// Holds the engine thread inside a request's first event until open(): the
// request is running (its prompt is in the cache) while the test acts.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, released = false;

  std::function<bool(CompletionEvent&&)> hold(std::function<bool(CompletionEvent&&)> inner) {
    return [this, inner](CompletionEvent&& ev) {
      std::unique_lock<std::mutex> lk(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lk, [&] { return released; });
      lk.unlock();
      return inner(std::move(ev));
    };
  }
  void wait_entered() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return entered; });
  }
  void open() {
    {
      std::lock_guard<std::mutex> lk(mu);
      released = true;
    }
    cv.notify_all();
  }
};

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

// Speculative decoding per slot, inside continuous batching: a draft model
// (the tiny model with noise: same vocabulary, often wrong; also scoring only
// a draft vocabulary), n-gram lookup and an EAGLE-3 head, 4 requests on 3 slots with stop strings and logprobs, give exactly
// what plain single-sequence decoding gives each; drafts were made, some
// taken and some rolled back, and every slot's blocks came back.
TEST(Scheduler, SpeculativeSlotsMatchPlainDecoding) {
  testing::TinyModelSpec noisy;
  noisy.noise = 0.25f;
  testing::LoadedTinyModel draft("sched_draft", noisy);
  const std::string head = testing::write_tiny_eagle3(testing::make_tiny_eagle3({}), tiny().path, "sched");
  const std::vector<std::string> prompts = {"The cat sat on the mat", "It was a warm afternoon, and the wind",
                                            "Over the fence, a dog barked at a passing car, then lay down",
                                            "When the sun went down"};
  // A draft vocabulary of the tokens tiny_text uses (the last variant: the draft model scoring only those).
  const Tokenizer& tok = tiny().model->tokenizer();
  std::vector<uint64_t> counts(static_cast<size_t>(tok.n_vocab()), 0);
  for (int32_t id : tok.encode(testing::tiny_text(), false, false)) ++counts[static_cast<size_t>(id)];
  const std::string ranking = tiny().path + ".draft-vocab.gguf";
  save_token_ranking(ranking, rank_tokens(tok, counts));
  for (int variant = 0; variant < 4; ++variant) {
    const DecodePolicy policy = std::array{DecodePolicy::DraftModel, DecodePolicy::NgramSimple, DecodePolicy::Eagle3,
                                           DecodePolicy::DraftModel}[variant];
    SchedulerOptions o = opts(3, 7);
    o.engine.decode.policy = policy;
    o.engine.decode.draft_model = draft.path;
    if (variant == 3) {
      o.engine.decode.draft_vocab = ranking;
      o.engine.decode.draft_vocab_n = 24;
    }
    o.engine.decode.eagle3_head = head;
    o.engine.decode.draft_max = 4;
    o.engine.decode.draft_p_min = 0.0f;
    o.engine.decode.ngram_n = 1;
    o.engine.decode.adaptive = false;
    Scheduler sched(*tiny().model, o);
    std::vector<Collector> c(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      CompletionRequest r;
      r.prompt = encode(prompts[i]);
      r.gen = greedy(20 + static_cast<int>(i));
      r.n_logprobs = 2;
      r.on_event = c[i].sink();
      ASSERT_EQ(sched.submit(std::move(r)).status, SubmitStatus::Accepted);
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
      const CompletionResult res = c[i].wait();
      const auto want = reference_tokens(encode(prompts[i]), greedy(20 + static_cast<int>(i)));
      EXPECT_EQ(res.tokens, want) << decode_policy_name(policy) << " request " << i;
      EXPECT_EQ(res.text, tiny().model->tokenizer().decode(want));
      EXPECT_EQ(c[i].streamed, res.text);
      ASSERT_EQ(c[i].logprobs.size(), want.size());
      for (size_t t = 0; t < want.size(); ++t) EXPECT_EQ(c[i].logprobs[t].token, want[t]);
    }
    const auto st = sched.stats();
    EXPECT_GT(st.spec_drafted, 0u) << decode_policy_name(policy);
    // A random EAGLE-3 head is rarely right: its drafts are rolled back.
    if (policy != DecodePolicy::Eagle3) EXPECT_GT(st.spec_accepted, 0u);
    if (policy == DecodePolicy::DraftModel) EXPECT_LT(st.spec_accepted, st.spec_drafted);
    EXPECT_EQ(st.kv_blocks_in_use, 0);
    EXPECT_TRUE(sched.idle());
  }
  std::filesystem::remove(head);
  std::filesystem::remove(ranking);
}

TEST(Scheduler, SpeculativeDecodingRefusesKvCompress) {
  SchedulerOptions o = opts(2, 7);
  o.engine.decode.policy = DecodePolicy::NgramSimple;
  o.engine.kv_compress.mode = KvCompressConfig::Mode::Metric;
  o.engine.kv_compress.rate = 2;
  EXPECT_THROW(Scheduler(*tiny().model, o), Error);
}

TEST(Scheduler, SpeculativeDecodingRefusesDraftTrees) {  // a slot verifies chains
  SchedulerOptions o = opts(2, 7);
  o.engine.decode.policy = DecodePolicy::DraftModel;
  o.engine.decode.draft_model = tiny().path;
  o.engine.decode.draft_branches = 2;
  try {
    Scheduler refused(*tiny().model, o);
    ADD_FAILURE() << "a server slot took --spec-branches 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--spec-branches"), std::string::npos) << e.what();
  }
  o.engine.decode.draft_branches = 1;
  EXPECT_NO_THROW(Scheduler(*tiny().model, o));
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
  // Idle: no block is held by a running request; the idle slots' tokens stay
  // cached (slot 1 last held `longer` + 3 generated, slot 0 the same tokens).
  const auto st = sched.stats();
  EXPECT_EQ(st.kv_blocks_in_use, 0);
  EXPECT_EQ(st.kv_block_size, KvCache::kBlock);
  EXPECT_EQ(st.kv_blocks_total, 2 * blocks_for(256));
  EXPECT_EQ(st.kv_blocks_cached, 2 * blocks_for(static_cast<int64_t>(longer.size()) + 3));
}

// A system prompt computed by one slot is shared, block by block, with a
// request running in another slot: the second request evaluates only what
// follows the common prefix, reports it as cached, and produces the tokens of a
// fresh run. When both are done, no block is held by a running request and the
// cached ones are exactly the distinct blocks of the two sequences.
TEST(Scheduler, SharesASystemPromptAcrossSlots) {
  Scheduler sched(*tiny().model, opts(2, 64));
  const std::string system = "You are a helpful assistant. Answer briefly and kindly, in plain words. ";
  const auto a = encode(system + "What is a cat?");
  const auto b = encode(system + "Where do birds sleep at night?");
  const size_t common = common_prefix(a, b);
  ASSERT_GE(common, 3u * KvCache::kBlock);  // several whole blocks to share

  // A blocks the engine inside its first event (its prompt is in the cache and
  // it is still running) until B has been submitted.
  Gate gate;
  Collector ca, cb;
  CompletionRequest ra;
  ra.prompt = a;
  ra.gen = greedy(20);
  ra.n_logprobs = 0;  // an event for every token
  ra.on_event = gate.hold(ca.sink());
  ASSERT_EQ(sched.submit(std::move(ra)).status, SubmitStatus::Accepted);
  gate.wait_entered();
  EXPECT_EQ(sched.stats().kv_blocks_in_use, blocks_for(static_cast<int64_t>(a.size())));
  CompletionRequest rb;
  rb.prompt = b;
  rb.gen = greedy(8);
  rb.on_event = cb.sink();
  ASSERT_EQ(sched.submit(std::move(rb)).status, SubmitStatus::Accepted);
  gate.open();
  const CompletionResult res_a = ca.wait();
  const CompletionResult res_b = cb.wait();

  EXPECT_EQ(res_a.cached_tokens, 0);
  EXPECT_EQ(res_b.cached_tokens, static_cast<int64_t>(common));
  EXPECT_EQ(res_a.tokens, reference_tokens(a, greedy(20)));
  EXPECT_EQ(res_b.tokens, reference_tokens(b, greedy(8)));
  EXPECT_EQ(res_b.text, tiny().model->tokenizer().decode(res_b.tokens));
  const auto st = sched.stats();
  EXPECT_EQ(st.prompt_tokens, a.size() + b.size() - common);  // the shared part was evaluated once
  EXPECT_EQ(st.prompt_tokens_cached, common);
  EXPECT_EQ(st.kv_blocks_in_use, 0);
  // Each sequence holds its prompt and all but its last generated token; B's
  // copy of the partly filled block it diverged in is its own.
  const int64_t len_a = static_cast<int64_t>(a.size()) + 20 - 1;
  const int64_t len_b = static_cast<int64_t>(b.size()) + 8 - 1;
  EXPECT_EQ(st.kv_blocks_cached,
            blocks_for(len_a) + blocks_for(len_b) - static_cast<int64_t>(common) / KvCache::kBlock);
}

// A pool too small for two requests at once: the second waits until the first
// is done and its blocks can be given back, instead of running out of blocks in
// the middle of a batch. A request larger than the whole pool is refused with
// the numbers.
TEST(Scheduler, WaitsForFreeBlocksWhenThePoolIsShared) {
  const int64_t pool = 4 * KvCache::kBlock;
  Scheduler sched(*tiny().model, opts(2, 16, 16, pool));
  EXPECT_EQ(sched.stats().kv_blocks_total, 4);
  const auto p1 = encode("The cat sat on the mat");
  const auto p2 = encode("A dog ran in the park");
  const int n1 = static_cast<int>(pool - static_cast<int64_t>(p1.size()));  // fills the pool
  const int n2 = static_cast<int>(pool - static_cast<int64_t>(p2.size()));
  Collector c1, c2;
  CompletionRequest r1, r2;
  r1.prompt = p1;
  r1.gen = greedy(n1);
  r1.on_event = c1.sink();
  r2.prompt = p2;
  r2.gen = greedy(n2);
  bool seen = false, first_was_done = false;  // engine thread only
  auto inner = c2.sink();
  r2.on_event = [&, inner](CompletionEvent&& ev) {
    if (!seen) {
      seen = true;
      std::lock_guard<std::mutex> lk(c1.mu);
      first_was_done = c1.done;
    }
    return inner(std::move(ev));
  };
  ASSERT_EQ(sched.submit(std::move(r1)).status, SubmitStatus::Accepted);
  ASSERT_EQ(sched.submit(std::move(r2)).status, SubmitStatus::Accepted);
  const auto res1 = c1.wait();
  const auto res2 = c2.wait();
  EXPECT_EQ(res1.finish_reason, "length") << res1.error;
  EXPECT_EQ(res2.finish_reason, "length") << res2.error;
  EXPECT_EQ(res1.tokens, reference_tokens(p1, greedy(n1)));
  EXPECT_EQ(res2.tokens, reference_tokens(p2, greedy(n2)));
  EXPECT_TRUE(first_was_done);  // the second one ran only after the first was done

  CompletionRequest big;
  big.prompt = p1;
  big.gen = greedy(static_cast<int>(pool));  // fits a slot (256) but not the pool
  const auto sub = sched.submit(std::move(big));
  EXPECT_EQ(sub.status, SubmitStatus::Invalid);
  EXPECT_NE(sub.message.find("kv cache too small"), std::string::npos) << sub.message;
  EXPECT_NE(sub.message.find("pool holds 4"), std::string::npos) << sub.message;

  const auto st = sched.stats();
  EXPECT_EQ(st.requests_finished, 2u);
  EXPECT_EQ(st.kv_blocks_in_use, 0);
  EXPECT_EQ(st.kv_blocks_cached, 4);  // the second request's tokens, kept for reuse
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
  Gate gate;
  Collector first;
  CompletionRequest r1;
  r1.prompt = encode("The cat");
  r1.gen = greedy(50);
  r1.on_event = gate.hold(first.sink());
  ASSERT_EQ(sched.submit(std::move(r1)).status, SubmitStatus::Accepted);
  gate.wait_entered();
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
  gate.open();
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
