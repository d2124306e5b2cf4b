#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "runtime/memory_footprint.h"
#include "switches/registry.h"

namespace kestrel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double now_seconds() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// log-softmax of the raw logits at `token`, plus the n most likely tokens.
TokenLogprob token_logprob(const float* logits, int n_vocab, int32_t token, int n_top) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<float>(logits[token] - lse);
  const int n = std::clamp(n_top, 0, n_vocab);
  if (n > 0) {
    std::vector<int32_t> idx(n_vocab);
    for (int i = 0; i < n_vocab; ++i) idx[i] = i;
    auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), better);
    for (int i = 0; i < n; ++i) out.top.emplace_back(idx[i], static_cast<float>(logits[idx[i]] - lse));
  }
  return out;
}

KvShape pool_shape(const Model& model, const SchedulerOptions& o) {
  KvShape shape = model.kv_shape(o.n_ctx_slot, std::max(o.n_slots, 1));
  shape.n_pool = o.n_ctx_total;
  return shape;
}

int64_t blocks_for(int64_t positions) { return (positions + KvCache::kBlock - 1) / KvCache::kBlock; }

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t c = 0;
  while (c < a.size() && c < b.size() && a[c] == b[c]) ++c;
  return c;
}

}  // namespace

struct Scheduler::Pending {
  uint64_t id = 0;
  CompletionRequest req;
  Clock::time_point submitted;
};

struct Scheduler::Slot {
  int index = 0;
  bool active = false;
  bool cancel = false;
  bool prefilling = false;
  uint64_t id = 0;
  uint64_t last_used = 0;  // admission counter, for least-recently-used ties
  int64_t n_total = 0;     // positions the request may fill: prompt + max_tokens
  CompletionRequest req;
  std::vector<int32_t> cached;  // tokens whose keys/values are in this slot, in order
  size_t n_prompt_done = 0;     // prompt tokens in the cache (reused + evaluated)
  int32_t pending_token = -1;   // sampled, fed in the next step
  std::vector<int32_t> draft;   // speculative decoding: fed after it in this step
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> decoder;
  std::unique_ptr<StopMatcher> stops;
  std::unique_ptr<SequenceCompressor> compressor;  // KV-Compress on: this slot's
  std::vector<TokenLogprob> lp_pending;
  CompletionResult result;
  Clock::time_point submitted, first_token;
  bool got_first = false;
};

Scheduler::Scheduler(const Model& model, const SchedulerOptions& options)
    : model_(model),
      options_(options),
      core_(std::make_unique<EngineCore>(model, options.engine, pool_shape(model, options))),
      cache_(&core_->cache()),
      kv_compress_(kv_compress_spec(options.engine.kv_compress)) {
  if (options_.n_slots < 1) fail("scheduler: need at least one slot, got ", options_.n_slots);
  if (options_.n_ctx_total < 0) fail("scheduler: KV pool size must not be negative, got ", options_.n_ctx_total);
  if (options_.prefill_chunk < 1) fail("scheduler: prefill chunk must be positive, got ", options_.prefill_chunk);
  if (options_.max_queue < 0) fail("scheduler: queue size must not be negative, got ", options_.max_queue);
  for (int i = 0; i < options_.n_slots; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->index = i;
    if (kv_compress_.on())
      slots_.back()->compressor =
          std::make_unique<SequenceCompressor>(kv_compress_, model.config().n_layer, model.config().n_kv_head);
  }
  if (kv_compress_.on()) kv_cap_blocks_ = slots_[0]->compressor->decode_cap_blocks(cache_->shape());
  if (options_.engine.decode.policy != DecodePolicy::Plain && kv_compress_.on())
    fail(
        "serve: speculative decoding does not run with KV-Compress yet (a rejected draft is rolled back, and "
        "eviction may have taken the blocks it would be cut into)");
  if (options_.engine.decode.policy != DecodePolicy::Plain && options_.engine.decode.draft_branches > 1)
    fail("serve: --spec-branches ", options_.engine.decode.draft_branches,
         ": a slot verifies chains (draft trees run in run, chat and bench); use --spec-branches 1");
  drafters_ = make_drafters(model, core_->config(), options_.n_ctx_slot, options_.n_slots);
  // EAGLE-3: the slots' drafters share one store of the target's hidden states.
  if (!drafters_.empty()) core_->set_hidden_tap(drafters_[0]->hidden_tap());
  stats_.n_slots = options_.n_slots;
  pool_blocks_ = cache_->in_position_blocks(cache_->total_blocks());
  stats_.kv_block_size = KvCache::kBlock;
  stats_.kv_blocks_total = pool_blocks_;
  stats_.kv_head_blocks_per_block = cache_->heads_per_position_block();
  stats_.guard_switches = engine_settings_text(core_->config());
  config_ = core_->config();
  if (options_.check.every > 0) {
    RunningCheckOptions c = options_.check;
    c.n_ctx = options_.n_ctx_slot;
    check_ = std::make_unique<RunningCheck>(model, c);
    refresh_guard_memory_locked();  // no other thread yet
  }
  thread_ = std::thread([this] { loop(); });
}

void Scheduler::check_row(const Slot& s, const float* logits, bool alone) {
  if (!check_ || pending_config_) return;
  const int n_vocab = model_.config().n_vocab;
  try {
    if (!check_->observe(s.id, s.cached, std::span<const float>(logits, static_cast<size_t>(n_vocab)),
                         alone ? std::optional<double>(last_forward_seconds_) : std::nullopt))
      return;
  } catch (const std::exception& e) {
    // The check is a guard, not the service: it stops, requests go on.
    std::lock_guard<std::mutex> lk(mu_);
    stats_.guard_switches += std::string(" (running check stopped: ") + e.what() + ")";
    check_.reset();
    return;
  }
  const RunningCheck::Figures f = check_->figures();
  std::string why = check_->over_budget();
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.guard = f;
  }
  if (why.empty() || !options_.on_over_budget) return;
  if (std::optional<EngineConfig> next = options_.on_over_budget(why)) {
    if (!(next->kv_compress == options_.engine.kv_compress) || !(next->decode == options_.engine.decode))
      fail("running check: a new configuration must keep the KV-Compress and decode settings");
    pending_config_ = std::move(next);
  } else {
    check_->reset();  // nothing left to turn off: judge afresh
  }
}

void Scheduler::reconfigure_locked() {
  core_ = std::make_unique<EngineCore>(model_, *pending_config_, pool_shape(model_, options_));
  cache_ = &core_->cache();
  options_.engine = *pending_config_;
  pending_config_.reset();
  if (!drafters_.empty()) core_->set_hidden_tap(drafters_[0]->hidden_tap());
  for (auto& sp : slots_) sp->cached.clear();  // the old cache's prefixes are gone
  pool_blocks_ = cache_->in_position_blocks(cache_->total_blocks());
  stats_.kv_blocks_total = pool_blocks_;
  stats_.kv_head_blocks_per_block = cache_->heads_per_position_block();
  ++stats_.guard_reconfigurations;
  config_ = core_->config();
  stats_.guard_switches = engine_settings_text(core_->config());
  stats_.guard = {};
  refresh_guard_memory_locked();
  refresh_kv_stats_locked();
  if (check_) check_->reset();
}

void Scheduler::refresh_guard_memory_locked() {
  if (!check_) return;
  const auto positions = static_cast<int64_t>(pool_blocks_) * KvCache::kBlock;
  stats_.guard_memory_ratio =
      memory_at_context(model_, config_, positions) / memory_at_context(model_, options_.check.exact, positions);
}

Scheduler::~Scheduler() { stop(); }

EngineConfig Scheduler::config() const {
  std::lock_guard<std::mutex> lk(mu_);
  return config_;
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::begin_drain() {
  std::lock_guard<std::mutex> lk(mu_);
  draining_ = true;
}

bool Scheduler::idle() const {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.empty() && busy_slots_ == 0;
}

void Scheduler::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancelled_.push_back(id);
  }
  cv_.notify_all();
}

SubmitResult Scheduler::submit(CompletionRequest req) {
  SubmitResult r;
  const int64_t n_prompt = static_cast<int64_t>(req.prompt.size());
  const int n_vocab = model_.config().n_vocab;
  if (n_prompt == 0) {
    r.message = "the prompt is empty";
    return r;
  }
  for (int32_t t : req.prompt) {
    if (t < 0 || t >= n_vocab) {
      r.message = "token id " + std::to_string(t) + " is outside the vocabulary (" + std::to_string(n_vocab) +
                  " tokens)";
      return r;
    }
  }
  if (req.gen.max_tokens < 1) {
    r.message = "max_tokens must be at least 1, got " + std::to_string(req.gen.max_tokens);
    return r;
  }
  if (n_prompt + req.gen.max_tokens > options_.n_ctx_slot) {
    r.message = "context overflow: the prompt has " + std::to_string(n_prompt) + " tokens and max_tokens is " +
                std::to_string(req.gen.max_tokens) + ", " + std::to_string(n_prompt + req.gen.max_tokens) +
                " tokens requested, but the context of a slot holds " + std::to_string(options_.n_ctx_slot);
    return r;
  }
  const int64_t need = peak_position_blocks(n_prompt, n_prompt + req.gen.max_tokens);
  if (need > pool_blocks_) {
    r.message = "kv cache too small: the prompt has " + std::to_string(n_prompt) + " tokens and max_tokens is " +
                std::to_string(req.gen.max_tokens) + ", which may need " + std::to_string(need) + " blocks of " +
                std::to_string(KvCache::kBlock) + " positions, but the pool holds " + std::to_string(pool_blocks_);
    return r;
  }
  try {
    Sampler probe(req.gen.sampling, n_vocab);  // rejects NaN parameters
  } catch (const Error& e) {
    r.message = e.what();
    return r;
  }
  auto p = std::make_unique<Pending>();
  p->req = std::move(req);
  p->submitted = Clock::now();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (draining_ || stopping_) {
      r.status = SubmitStatus::ShuttingDown;
      r.message = "the server is shutting down";
      return r;
    }
    const size_t free_slots = static_cast<size_t>(options_.n_slots - busy_slots_);
    if (queue_.size() >= static_cast<size_t>(options_.max_queue) + free_slots) {
      r.status = SubmitStatus::QueueFull;
      r.message = "the request queue is full (" + std::to_string(options_.max_queue) + " waiting); retry later";
      return r;
    }
    p->id = next_id_++;
    r.id = p->id;
    queue_.push_back(std::move(p));
  }
  cv_.notify_all();
  r.status = SubmitStatus::Accepted;
  return r;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  SchedulerStats s = stats_;
  s.slots_in_use = busy_slots_;
  s.queue_depth = static_cast<int>(queue_.size());
  // Decode throughput over the last 10 s of steps (0 when idle that long).
  const double now = now_seconds();
  uint64_t tokens = 0;
  double oldest = now;
  for (const auto& [t, n] : rate_window_) {
    if (now - t > 10.0) continue;
    tokens += n;
    oldest = std::min(oldest, t);
  }
  const double span = now - oldest;
  s.decode_tokens_per_second = span > 0.05 ? static_cast<double>(tokens) / span : 0.0;
  return s;
}

// Under mu_, on the engine thread: the free slot a prompt runs in, and how many
// of its tokens are already in that slot's cache once this returns (`keep`). A
// slot's own prefix is kept by shortening it; a longer prefix held by another
// slot (running or idle) is shared block by block.
Scheduler::Slot* Scheduler::pick_slot_locked(const std::vector<int32_t>& prompt, bool reuse, size_t& keep) {
  Slot* dst = nullptr;
  size_t own = 0;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.active) continue;
    const size_t c = reuse ? common_prefix(s.cached, prompt) : 0;
    if (!dst || c > own || (c == own && s.last_used < dst->last_used)) {
      dst = &s;
      own = c;
    }
  }
  if (!dst) return nullptr;
  // A short accidental match ("The ...") is not worth evicting a slot that
  // holds a long prefix: below half the prompt and below kMinReuse tokens,
  // take an empty free slot, else the least recently used one.
  constexpr size_t kMinReuse = 32;
  if (!reuse || (own * 2 < prompt.size() && own < kMinReuse)) {
    dst = nullptr;
    for (auto& sp : slots_) {
      Slot& s = *sp;
      if (s.active) continue;
      if (!dst || (s.cached.empty() && !dst->cached.empty()) ||
          (s.cached.empty() == dst->cached.empty() && s.last_used < dst->last_used))
        dst = &s;
    }
    own = reuse ? common_prefix(dst->cached, prompt) : 0;
  }
  Slot* src = nullptr;
  size_t shared = 0;
  for (auto& sp : slots_) {
    // A compressed slot's blocks are not a prefix to share (see the header).
    if (!reuse || sp.get() == dst || cache_->min_len(sp->index) > 0) continue;
    const size_t c = common_prefix(sp->cached, prompt);
    if (c > shared) {
      src = sp.get();
      shared = c;
    }
  }
  // Re-evaluate at least the last prompt token, whose logits give the first
  // sampled token.
  const size_t most = prompt.size() - 1;
  if (src && shared >= static_cast<size_t>(KvCache::kBlock) && shared > own) {
    keep = std::min(shared, most);
    cache_->share_prefix(dst->index, src->index, static_cast<int64_t>(keep));
    if (HiddenTap* tap = drafters_.empty() ? nullptr : drafters_[0]->hidden_tap())
      tap->share_positions(dst->index, src->index, 0, static_cast<int64_t>(keep));
  } else {
    keep = std::min(own, most);
    cache_->set_seq_len(dst->index, static_cast<int64_t>(keep));
  }
  dst->cached.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(keep));
  return dst;
}

// Blocks the running requests may still take from the pool (worst case).
int64_t Scheduler::blocks_needed_by_running() const {
  int64_t n = 0;
  for (const auto& sp : slots_)
    if (sp->active)
      n += blocks_still_needed(sp->index, sp->prefilling, static_cast<int64_t>(sp->req.prompt.size()), sp->n_total);
  return n;
}

int64_t Scheduler::blocks_still_needed(int seq, bool prefilling, int64_t n_prompt, int64_t n_total) const {
  const int64_t plain = cache_->blocks_needed(seq, n_total);
  if (kv_cap_blocks_ == 0) return plain;  // no budget: a rate only ever lowers this
  // Under a budget the slot holds at the most its whole prompt (evicted once
  // the prompt is in), then kv_cap_blocks_ while it decodes.
  const int64_t held = blocks_of(*cache_, seq);
  const int64_t prompt_peak = prefilling ? held + cache_->blocks_needed(seq, n_prompt) : 0;
  return std::min(plain, std::max<int64_t>(0, std::max(prompt_peak, kv_cap_blocks_) - held));
}

int64_t Scheduler::peak_position_blocks(int64_t n_prompt, int64_t n_total) const {
  const int64_t plain = blocks_for(n_total);
  if (kv_cap_blocks_ == 0) return plain;
  return std::min(plain, std::max(blocks_for(n_prompt), cache_->in_position_blocks(kv_cap_blocks_)));
}

void Scheduler::refresh_kv_stats_locked() {
  std::vector<int> running;
  for (const auto& sp : slots_)
    if (sp->active) running.push_back(sp->index);
  // In position blocks (kv_block_size positions of every layer and head).
  stats_.kv_blocks_in_use = cache_->in_position_blocks(cache_->blocks_held(running));
  stats_.kv_blocks_cached = cache_->in_position_blocks(cache_->used_blocks()) - stats_.kv_blocks_in_use;
}

// Under mu_: moves queued requests into free slots, in order, while the pool
// has room for them (see the header).
void Scheduler::admit_locked(Refused& refused) {
  while (!queue_.empty()) {
    const CompletionRequest& req = queue_.front()->req;
    size_t keep = 0;
    Slot* best = pick_slot_locked(req.prompt, req.reuse_prefix, keep);
    if (!best) break;
    const int64_t n_total = static_cast<int64_t>(req.prompt.size()) + req.gen.max_tokens;
    const int64_t n_prompt = static_cast<int64_t>(req.prompt.size());
    auto fits = [&] {
      return blocks_needed_by_running() + blocks_still_needed(best->index, true, n_prompt, n_total) <=
             cache_->free_blocks();
    };
    // Make room: idle slots give back their blocks, least recently used first
    // (blocks shared with a running request or with `best` stay).
    while (!fits()) {
      Slot* victim = nullptr;
      for (auto& sp : slots_) {
        Slot& s = *sp;
        if (s.active || &s == best || cache_->block_table(s.index).empty()) continue;
        if (!victim || s.last_used < victim->last_used) victim = &s;
      }
      if (!victim) break;
      cache_->clear_seq(victim->index);
      victim->cached.clear();
    }
    if (!fits()) {
      // What `best` shares may have raised what the running requests need (a
      // shared partly filled block is copied before it is written): let go.
      cache_->clear_seq(best->index);
      best->cached.clear();
      if (busy_slots_ > 0) break;  // wait for running requests to give blocks back
      // Alone and still too large: cannot happen for a request submit()
      // accepted (it checks the pool size), but never wait forever.
      std::string why = "kv cache: the request may need " + std::to_string(blocks_for(n_total)) + " blocks of " +
                        std::to_string(KvCache::kBlock) + " positions but only " +
                        std::to_string(cache_->free_blocks() / cache_->heads_per_position_block()) + " of " +
                        std::to_string(pool_blocks_) + " are free";
      refused.emplace_back(std::move(queue_.front()), std::move(why));
      queue_.pop_front();
      ++stats_.requests_finished;
      continue;
    }
    std::unique_ptr<Pending> p = std::move(queue_.front());
    queue_.pop_front();
    Slot& s = *best;
    s.active = true;
    s.cancel = false;
    s.prefilling = true;
    s.id = p->id;
    s.last_used = ++admissions_;
    s.n_total = n_total;
    s.req = std::move(p->req);
    s.n_prompt_done = keep;
    s.pending_token = -1;
    s.req.gen.sampling.kind = core_->config().sampler;  // the engine's sampler slot, whatever the request held
    s.sampler = std::make_unique<Sampler>(s.req.gen.sampling, model_.config().n_vocab);
    for (int32_t t : s.req.prompt) s.sampler->accept(t);
    s.decoder = std::make_unique<StreamDecoder>(model_.tokenizer());
    s.stops = std::make_unique<StopMatcher>(s.req.gen.stop);
    s.lp_pending.clear();
    s.result = CompletionResult{};
    s.result.prompt_tokens = static_cast<int64_t>(s.req.prompt.size());
    s.result.cached_tokens = static_cast<int64_t>(keep);
    s.result.queue_seconds = seconds_between(p->submitted, Clock::now());
    s.submitted = p->submitted;
    s.got_first = false;
    ++busy_slots_;
    stats_.prompt_tokens_cached += keep;
  }
  refresh_kv_stats_locked();
}

void Scheduler::finish(Slot& s, const std::string& reason, const std::string& error) {
  CompletionEvent ev;
  if (reason == "length") {
    ev.text = s.stops->flush(s.decoder->flush());
    s.result.text += ev.text;
  }
  s.result.finish_reason = reason;
  s.result.error = error;
  s.result.generate_seconds = s.got_first ? seconds_between(s.first_token, Clock::now()) : 0.0;
  ev.logprobs = std::move(s.lp_pending);
  ev.done = true;
  ev.result = s.result;
  s.active = false;
  if (check_) check_->end(s.id);
  s.lp_pending.clear();
  if (observed_ == &s) {
    observed_ = nullptr;
    observer_ = nullptr;
  }
  if (s.compressor) s.compressor->reset();
  if (cache_->min_len(s.index) > 0) {  // compressed: not a prefix to reuse (see the header)
    cache_->clear_seq(s.index);
    s.cached.clear();
  }
  {
    // Before the last event, so that a caller who saw it also sees the slot free.
    std::lock_guard<std::mutex> lk(mu_);
    --busy_slots_;
    ++stats_.requests_finished;
    refresh_kv_stats_locked();
  }
  auto on_event = std::move(s.req.on_event);
  s.req.on_event = nullptr;
  if (on_event) on_event(std::move(ev));
}

void Scheduler::emit_token(Slot& s, int32_t token, const float* logits) {
  const Tokenizer& tok = model_.tokenizer();
  if (!s.got_first) {
    s.got_first = true;
    s.first_token = Clock::now();
    s.result.ttft_seconds = seconds_between(s.submitted, s.first_token);
    std::lock_guard<std::mutex> lk(mu_);
    stats_.ttft_seconds_sum += s.result.ttft_seconds;
    ++stats_.ttft_count;
  }
  s.sampler->accept(token);
  if (s.req.gen.stop_at_eog && tok.is_eog(token)) {
    // Text held back as a possible stop-string start is real text after all.
    CompletionEvent tail;
    tail.text = s.stops->flush(s.decoder->flush());
    s.result.text += tail.text;
    if (!tail.text.empty() && s.req.on_event) s.req.on_event(std::move(tail));
    finish(s, "stop");
    return;
  }
  if (s.req.n_logprobs >= 0)
    s.lp_pending.push_back(token_logprob(logits, model_.config().n_vocab, token, s.req.n_logprobs));
  s.result.tokens.push_back(token);
  CompletionEvent ev;
  ev.text = s.stops->push(s.decoder->push(token));
  s.result.text += ev.text;
  if (!ev.text.empty() || !s.lp_pending.empty()) {
    ev.logprobs = std::move(s.lp_pending);
    s.lp_pending.clear();
    if (s.req.on_event && !s.req.on_event(std::move(ev))) {
      finish(s, "cancelled");
      return;
    }
  }
  if (s.stops->matched()) {
    finish(s, "stop");
    return;
  }
  if (static_cast<int64_t>(s.result.tokens.size()) >= s.req.gen.max_tokens ||
      static_cast<int64_t>(s.cached.size()) >= options_.n_ctx_slot) {
    finish(s, "length");  // the done event carries the held-back tail
    return;
  }
  s.pending_token = token;
}

bool Scheduler::step() {
  const int n_vocab = model_.config().n_vocab;
  for (auto& sp : slots_)
    if (sp->active && sp->cancel) finish(*sp, "cancelled");

  batch_.clear();
  std::vector<Slot*> rows;  // the slot of each logits row, in batch order
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (!s.active || s.prefilling) continue;
    batch_.add(s.pending_token, static_cast<int32_t>(s.cached.size()), s.index, true, true);
    s.cached.push_back(s.pending_token);
    rows.push_back(&s);
    s.draft.clear();
    if (drafters_.empty()) continue;
    // Every accepted token is one out, and the pass adds one more: a draft
    // stays inside the request's reserved positions and the slot's context.
    const int64_t left = s.req.gen.max_tokens - static_cast<int64_t>(s.result.tokens.size());
    const int64_t n_max = std::min<int64_t>(left - 1, options_.n_ctx_slot - static_cast<int64_t>(s.cached.size()));
    draft_tokens(*drafters_[static_cast<size_t>(s.index)], core_->config().decode, s.cached, n_max, s.draft);
    for (int32_t t : s.draft) {
      batch_.add(t, static_cast<int32_t>(s.cached.size()), s.index, true, true);
      s.cached.push_back(t);
      rows.push_back(&s);
    }
  }
  int budget = options_.prefill_chunk;
  int64_t n_prefill = 0;
  const size_t n = slots_.size();
  for (size_t k = 0; k < n && budget > 0; ++k) {
    Slot& s = *slots_[(prefill_cursor_ + k) % n];
    if (!s.active || !s.prefilling) continue;
    const size_t total = s.req.prompt.size();
    size_t take = std::min<size_t>(budget, total - s.n_prompt_done);
    if (s.compressor && kv_compress_.mode == KvCompressSpec::Mode::Metric) {
      // The core observes one sequence: the first slot to reach its observed
      // window takes it until its prompt is in; another stops short of its own.
      const auto from = static_cast<size_t>(s.compressor->observe_from(static_cast<int64_t>(total)));
      if (s.n_prompt_done + take > from) {
        if (!observed_) {
          observed_ = &s;
          observer_ = s.compressor->start_prompt(s.index, static_cast<int64_t>(total));
        } else if (observed_ != &s) {
          take = from > s.n_prompt_done ? from - s.n_prompt_done : 0;
        }
      }
    }
    for (size_t i = 0; i < take; ++i) {
      const size_t at = s.n_prompt_done + i;
      const bool last = at + 1 == total;
      batch_.add(s.req.prompt[at], static_cast<int32_t>(at), s.index, last);
      s.cached.push_back(s.req.prompt[at]);
      if (last) rows.push_back(&s);
    }
    s.n_prompt_done += take;
    budget -= static_cast<int>(take);
    n_prefill += static_cast<int64_t>(take);
  }
  prefill_cursor_ = (prefill_cursor_ + 1) % n;
  if (batch_.size() == 0) return false;

  logits_.resize(static_cast<size_t>(rows.size()) * n_vocab);
  try {
    core_->set_observer(observer_);
    const auto t0 = Clock::now();
    // With drafts in the batch, the decode kernels: a verified row must be
    // what a decode step gives (ops/matmul.h decode_kernels). Prompt rows
    // batched with them take those kernels too.
    bool drafts = false;
    for (Slot* r : rows) drafts = drafts || !r->draft.empty();
    core_->forward(batch_, logits_.data(), drafts);
    last_forward_seconds_ = seconds_between(t0, Clock::now());
    compress_after_step(rows);
  } catch (const std::exception& e) {
    // Cannot happen for requests submit() accepted; fail every slot in the batch
    // rather than the process, and forget what their caches hold.
    core_->set_observer(nullptr);
    for (auto& sp : slots_) {
      if (!sp->active) continue;
      sp->cached.clear();
      cache_->clear_seq(sp->index);
      finish(*sp, "error", e.what());
    }
    return true;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    refresh_kv_stats_locked();  // before any event: a caller sees this step's blocks
  }

  uint64_t sampled = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    Slot& s = *rows[r];
    if (!drafters_.empty() && !s.prefilling) {  // a generating slot: its pending token and draft
      const int64_t n_rows = 1 + static_cast<int64_t>(s.draft.size());
      sampled += static_cast<uint64_t>(verify_draft(s, logits_.data() + r * static_cast<size_t>(n_vocab), n_rows));
      r += static_cast<size_t>(n_rows - 1);
      continue;
    }
    const bool decode_row = !s.prefilling;
    s.prefilling = false;
    const float* row = logits_.data() + r * static_cast<size_t>(n_vocab);
    if (decode_row) check_row(s, row, batch_.size() == 1);
    int32_t token = 0;
    try {
      token = s.sampler->sample(std::span<const float>(row, n_vocab));
    } catch (const std::exception& e) {
      finish(s, "error", e.what());
      continue;
    }
    ++sampled;
    emit_token(s, token, row);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.steps;
    stats_.tokens_generated += sampled;
    stats_.prompt_tokens += static_cast<uint64_t>(n_prefill);
    const double now = now_seconds();
    rate_window_.emplace_back(now, sampled);
    while (!rate_window_.empty() && now - rate_window_.front().first > 10.0) rate_window_.pop_front();
  }
  return true;
}

int64_t Scheduler::verify_draft(Slot& s, const float* logits, int64_t n_rows) {
  const int64_t n_vocab = model_.config().n_vocab;
  const size_t k = static_cast<size_t>(n_rows - 1);
  const size_t base = s.cached.size() - static_cast<size_t>(n_rows);  // the pending token's position
  int64_t emitted = 0, accepted = 0;
  try {
    for (size_t i = 0; i <= k && s.active; ++i) {
      const float* row = logits + i * static_cast<size_t>(n_vocab);
      const std::span<const float> l(row, static_cast<size_t>(n_vocab));
      // A drafted token gets the verdict; after the last one, the target's own draw.
      const int32_t token = i < k ? s.sampler->verify(l, s.draft[i]) : s.sampler->sample(l);
      s.cached.resize(base + 1 + i);  // what the cache keeps once this token is out (decode's count)
      emit_token(s, token, row);
      ++emitted;
      if (i == k) break;
      if (token != s.draft[i]) break;  // rejected: the rest of the draft goes
      ++accepted;
    }
  } catch (const std::exception& e) {
    finish(s, "error", e.what());
  }
  // Rejected drafts (or a finish inside the draft): their KV entries go back.
  if (cache_->seq_len(s.index) > static_cast<int64_t>(s.cached.size()))
    cache_->set_seq_len(s.index, static_cast<int64_t>(s.cached.size()));
  if (k > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.spec_drafted += k;
    stats_.spec_accepted += static_cast<uint64_t>(accepted);
  }
  DraftRound round;
  round.n_pass = batch_.size();
  round.pass_seconds = last_forward_seconds_;
  round.drafted = static_cast<int64_t>(k);
  round.accepted = accepted;
  round.rejected = accepted < round.drafted;
  drafters_[static_cast<size_t>(s.index)]->observe(round);
  s.draft.clear();
  return emitted;
}

void Scheduler::compress_after_step(const std::vector<Slot*>& rows) {
  if (!kv_compress_.on()) return;
  EvictionCount n;
  uint64_t runs = 0;
  for (Slot* s : rows) {
    // A prefilling slot has a logits row once its last prompt token is in.
    const EvictionCount one =
        s->prefilling ? s->compressor->after_prompt(*cache_, s->index) : s->compressor->after_decode(*cache_, s->index);
    if (s == observed_ && s->prefilling) {
      observed_ = nullptr;
      observer_ = nullptr;
      core_->set_observer(nullptr);
    }
    n += one;
    runs += one.evicted > 0 ? 1 : 0;
  }
  if (runs == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  stats_.kvcompress_runs += runs;
  stats_.kvcompress_head_blocks_evicted += static_cast<uint64_t>(n.evicted);
  stats_.kvcompress_head_blocks_freed += static_cast<uint64_t>(n.freed);
}

void Scheduler::loop() {
  for (;;) {
    std::vector<std::unique_ptr<Pending>> dropped;  // cancelled while queued
    Refused refused;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || busy_slots_ > 0 || !queue_.empty() || !cancelled_.empty(); });
      stopping = stopping_;
      for (uint64_t id : cancelled_) {
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
          if ((*it)->id == id) {
            dropped.push_back(std::move(*it));
            queue_.erase(it);
            break;
          }
        }
        for (auto& sp : slots_)
          if (sp->active && sp->id == id) sp->cancel = true;
      }
      cancelled_.clear();
      if (stopping) {
        while (!queue_.empty()) {
          dropped.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        for (auto& sp : slots_)
          if (sp->active) sp->cancel = true;
      } else {
        // A switch turned off by the running check: once the running requests
        // end, the core is rebuilt; new requests wait for it.
        if (pending_config_ && busy_slots_ == 0) reconfigure_locked();
        if (!pending_config_) admit_locked(refused);
      }
    }
    for (auto& [p, why] : refused) {
      CompletionEvent ev;
      ev.done = true;
      ev.result.finish_reason = "error";
      ev.result.error = why;
      ev.result.prompt_tokens = static_cast<int64_t>(p->req.prompt.size());
      if (p->req.on_event) p->req.on_event(std::move(ev));
    }
    for (auto& p : dropped) {
      CompletionEvent ev;
      ev.done = true;
      ev.result.finish_reason = "cancelled";
      ev.result.prompt_tokens = static_cast<int64_t>(p->req.prompt.size());
      if (p->req.on_event) p->req.on_event(std::move(ev));
    }
    if (stopping) {
      for (auto& sp : slots_)
        if (sp->active) finish(*sp, "cancelled");
      return;
    }
    step();
  }
}

}  // namespace kestrel
