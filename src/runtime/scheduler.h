#pragma once
// Continuous batching: N slots share one KvCache (sequence id = slot index). One
// engine thread loops: admit queued requests into free slots, build ONE batch
// holding a decode token for every generating slot plus up to `prefill_chunk`
// prompt tokens of slots still in prefill (so a long prompt never stalls the
// others), run Model::forward once, sample per slot, emit text, retire finished
// slots. Requests come from any thread through submit() / cancel().
//
// The KV cache is paged (kv/kv_cache.h): one pool of blocks shared by the slots,
// each slot using up to n_ctx_slot positions of it. A request is admitted only
// when the pool can give it, and every running request, all the blocks they may
// still take (prompt + max_tokens, worst case); blocks that idle slots keep for
// reuse are given back, least recently used first, to make room.
//
// Prefix reuse: a free slot keeps the tokens it last held. A new request goes to
// the free slot with the longest common prefix and evaluates only the rest; when
// another slot, running or idle, holds a longer prefix (at least one block), the
// new request shares that slot's blocks instead of computing them again (a
// shared system prompt is stored and computed once). The last prompt token is
// always evaluated again: its logits give the first sampled token.
//
// KV-Compress (the `kvcompress` and `kv_budget` switches, runtime/kv_compressor.h):
// a slot's sequence is compressed once its prompt is evaluated (the logits of
// its last prompt token come first), and under a budget again whenever decode
// takes it one block per head past the budget; the evicted blocks go back to
// the pool, where admission finds them. One forward pass observes one
// sequence's attention, so a slot whose prompt reaches its observed window
// while another slot's is observed waits one step. Under a budget a request is
// reserved what it may hold at the most: its whole prompt (before eviction),
// then the budget's cap, not prompt + max_tokens. A compressed slot's cache is
// not reused as a prefix (its blocks were chosen for its own prompt's last
// queries, and a rate applied again would compound): it is cleared when the
// request ends.
//
// Speculative decoding (EngineConfig::decode, runtime/drafter.h): each slot
// has its own drafter (a draft model shared by all, over each slot's own draft
// KV cache; or n-gram lookup). A generating slot puts its pending token and
// its draft in the step's batch (verified in the decode kernels, so its rows
// are what decode steps would give); Sampler::verify walks the draft, the
// slot emits what it accepts plus the target's own next token, and its KV
// entries past that are given back. The blocks a request reserves already
// cover its drafts: a draft never reaches past prompt + max_tokens.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kv/kv_cache.h"
#include "model/model.h"
#include "runtime/engine_core.h"
#include "runtime/kv_compressor.h"
#include "runtime/running_check.h"
#include "runtime/session.h"
#include "runtime/stop_matcher.h"
#include "sampling/sampler.h"

namespace kestrel {

struct SchedulerOptions {
  int n_slots = 1;           // sequences decoded together (--parallel)
  int64_t n_ctx_slot = 2048;  // positions per slot (prompt + generated)
  int64_t n_ctx_total = 0;    // positions in the KV pool shared by the slots; 0 = n_slots * n_ctx_slot
  int prefill_chunk = 128;    // prompt tokens per step, over all slots in prefill
  int max_queue = 64;         // waiting requests beyond the slots; more -> QueueFull
  EngineConfig engine;        // threads, kernels, KV type, sampler: the switches' slots
  // The accuracy guard's running check (runtime/running_check.h; off when
  // check.every is 0). When its running figures leave the budget,
  // on_over_budget(why) is asked for the configuration new requests run with
  // (a lossy switch turned off; nullopt: nothing more to turn off): new
  // requests then wait until the running ones end, the engine core is rebuilt
  // with it, and the check starts again. The new configuration must keep
  // `engine`'s KV-Compress and decode settings (the slots' policies).
  RunningCheckOptions check;
  std::function<std::optional<EngineConfig>(const std::string& why)> on_over_budget;
};

// One token's log-probability under the model (raw logits, temperature 1).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens, best first
};

struct CompletionResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::string finish_reason;  // "stop", "length", "cancelled", "error"
  std::string error;          // set when finish_reason == "error"
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens reused from the cache (this slot's or shared)
  double queue_seconds = 0.0;
  double ttft_seconds = 0.0;  // submit -> first sampled token
  double generate_seconds = 0.0;
};

// What the engine hands back while a request runs. `done` marks the last event,
// which carries the result; earlier events carry text (possibly empty when a
// token's text is held back, e.g. a partial stop string) and logprobs.
struct CompletionEvent {
  std::string text;
  std::vector<TokenLogprob> logprobs;  // tokens sampled since the last event
  bool done = false;
  CompletionResult result;
};

struct CompletionRequest {
  std::vector<int32_t> prompt;
  GenerateOptions gen;   // max_tokens must be >= 1 here; the caller resolves defaults
  int n_logprobs = -1;   // < 0: none; n >= 0: the chosen token's logprob + top n
  // false: evaluate the whole prompt even if a slot holds a prefix of it. Logits
  // can differ in the last bits with how a prompt is split into batches, so a
  // caller who wants a seed to reproduce a text exactly turns reuse off.
  bool reuse_prefix = true;
  // Called on the engine thread, in order; must be quick. Return false to cancel.
  std::function<bool(CompletionEvent&&)> on_event;
};

enum class SubmitStatus { Accepted, Invalid, QueueFull, ShuttingDown };

struct SubmitResult {
  SubmitStatus status = SubmitStatus::Invalid;
  std::string message;
  uint64_t id = 0;
};

struct SchedulerStats {
  int n_slots = 0;
  int slots_in_use = 0;
  int queue_depth = 0;
  uint64_t requests_finished = 0;
  uint64_t tokens_generated = 0;
  uint64_t prompt_tokens = 0;         // evaluated (not counting reused ones)
  uint64_t prompt_tokens_cached = 0;  // reused from the cache
  // The paged KV cache, in blocks of kv_block_size positions. in_use: held by
  // running requests (back to 0 when idle); cached: held only by idle slots for
  // prefix reuse (given back when space is needed); the rest are free.
  int64_t kv_block_size = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_in_use = 0;
  int64_t kv_blocks_cached = 0;
  // KV-Compress, since start, in blocks of one (layer, kv head):
  // kv_head_blocks_per_block of them make one of the blocks above.
  int64_t kv_head_blocks_per_block = 0;
  uint64_t kvcompress_runs = 0;                 // compressions that evicted something
  uint64_t kvcompress_head_blocks_evicted = 0;  // taken out of slots' block tables
  uint64_t kvcompress_head_blocks_freed = 0;    // of those, back in the pool (not shared with another slot)
  uint64_t spec_drafted = 0;                    // speculative decoding: tokens drafted
  uint64_t spec_accepted = 0;                   // of those, accepted
  uint64_t steps = 0;
  // The running accuracy check's figures since the configuration last changed
  // (checks, mean KLD, top-1 agreement, timed checks and speed-up), and the
  // times a switch was turned off.
  RunningCheck::Figures guard;
  // Weights + the KV pool of the configuration running over the exact path's
  // (runtime/memory_footprint.h; 1 when no check runs).
  double guard_memory_ratio = 1.0;
  uint64_t guard_reconfigurations = 0;
  std::string guard_switches;  // engine_settings_text of the configuration running
  double ttft_seconds_sum = 0.0;
  uint64_t ttft_count = 0;
  double decode_tokens_per_second = 0.0;  // over the last few seconds of work
};

class Scheduler {
 public:
  // Starts the engine thread. The model must outlive the scheduler.
  Scheduler(const Model& model, const SchedulerOptions& options);
  ~Scheduler();  // stop(), then joins
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const SchedulerOptions& options() const { return options_; }
  // The engine configuration as resolved (what new requests run with; the
  // running accuracy check may change it). Thread-safe: a copy.
  EngineConfig config() const;

  // Validates (context overflow, empty prompt, bad token ids) and queues.
  // Thread-safe. on_event is never called for a request that is not Accepted.
  SubmitResult submit(CompletionRequest request);
  // Ends a queued or running request (its last event has finish "cancelled").
  void cancel(uint64_t id);
  // Refuses new requests from now on; running and queued ones go on.
  void begin_drain();
  // True when nothing is queued or running.
  bool idle() const;
  // Ends the engine thread; queued and running requests are cancelled.
  void stop();

  SchedulerStats stats() const;

 private:
  struct Slot;
  struct Pending;

  void loop();
  // Requests admit_locked() could not run, with the reason (answered unlocked).
  using Refused = std::vector<std::pair<std::unique_ptr<Pending>, std::string>>;
  void admit_locked(Refused& refused);
  bool step();
  void finish(Slot& s, const std::string& reason, const std::string& error = "");
  void emit_token(Slot& s, int32_t token, const float* logits);
  // Speculative decoding: a generating slot's pending token and draft are in
  // the batch; `logits` holds their rows. Returns the tokens emitted.
  int64_t verify_draft(Slot& s, const float* logits, int64_t n_rows);
  Slot* pick_slot_locked(const std::vector<int32_t>& prompt, bool reuse, size_t& keep);
  int64_t blocks_needed_by_running() const;
  // Blocks slot `seq` may still take from the pool to finish a prompt of
  // n_prompt tokens (when prefilling) and reach n_total positions.
  int64_t blocks_still_needed(int seq, bool prefilling, int64_t n_prompt, int64_t n_total) const;
  // The position blocks a request may hold at the most (submit's check).
  int64_t peak_position_blocks(int64_t n_prompt, int64_t n_total) const;
  // After a forward pass: compress the slots whose prompt ended in it, and
  // the decoding ones over the budget.
  void compress_after_step(const std::vector<Slot*>& rows);
  void refresh_kv_stats_locked();
  // Between requests: rebuilds the engine core with pending_config_.
  void reconfigure_locked();
  // After a decode row was sampled: the running check's turn.
  // `alone`: the row was the only one in its batch (its step is timed).
  void check_row(const Slot& s, const float* logits, bool alone);
  // guard_memory_ratio of the configuration running (mu_ held).
  void refresh_guard_memory_locked();

  const Model& model_;
  SchedulerOptions options_;
  // Threads, KV store and kernels; used by the engine thread only. Rebuilt
  // (between requests) when the running accuracy check turns a switch off.
  std::unique_ptr<EngineCore> core_;
  KvCache* cache_;            // core_->cache()
  int64_t pool_blocks_ = 0;   // cache_.total_blocks(), readable from any thread
  Batch batch_;
  std::vector<float> logits_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::unique_ptr<Drafter>> drafters_;  // one per slot; empty: plain decoding
  double last_forward_seconds_ = 0.0;
  size_t prefill_cursor_ = 0;  // round-robin start among slots in prefill
  KvCompressSpec kv_compress_;          // what every slot's compressor does
  int64_t kv_cap_blocks_ = 0;           // under a budget: the most a decoding slot holds
  Slot* observed_ = nullptr;            // the slot whose prompt's attention the core observes
  EvictionMetric* observer_ = nullptr;  // its metric
  uint64_t admissions_ = 0;    // orders slots by last use
  std::unique_ptr<RunningCheck> check_;         // nullptr: off
  std::optional<EngineConfig> pending_config_;  // set when the check left the budget
  EngineConfig config_;                         // core_->config(), under mu_ for other threads

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  std::vector<uint64_t> cancelled_;  // ids cancelled since the last step
  uint64_t next_id_ = 1;
  bool draining_ = false;
  bool stopping_ = false;
  int busy_slots_ = 0;
  SchedulerStats stats_;
  std::deque<std::pair<double, uint64_t>> rate_window_;  // (time, tokens) for tokens/s
  std::thread thread_;
};

}  // namespace kestrel
