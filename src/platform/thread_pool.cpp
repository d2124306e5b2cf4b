#include "platform/thread_pool.h"

#include <algorithm>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#define KESTREL_PAUSE() _mm_pause()
#else
#define KESTREL_PAUSE() ((void)0)
#endif

namespace kestrel {
namespace {
// About 50-100 us of spinning before a worker sleeps: long enough to cover the gap
// between two parallel regions of one forward pass, short enough not to burn a
// core while the engine waits for a request.
constexpr int kSpinIterations = 20000;
// The caller's wait for the workers that joined: spin (a worker finishing its
// chunk is seen within a cache-line transfer), but past about 50 us yield the
// core between checks: a worker that was preempted inside its chunk cannot
// finish while we burn the time slice.
constexpr int kCallerSpinsBeforeYield = 1000;

constexpr uint64_t kClosed = uint64_t{1} << 31;
constexpr uint64_t kCountMask = kClosed - 1;

uint64_t ticket_id(uint64_t generation) { return (generation & 0xffffffffu) << 32; }
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::claim_chunks(int ith) {
  for (;;) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= n_chunks_) return;
    try {
      (*job_)(c, ith);
    } catch (...) {
      // Kept for the caller, which rethrows it once every thread has left
      // the loop (a worker's exception would otherwise end the process, and
      // the caller's would leave workers inside a loop whose frame is gone).
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
      next_chunk_.store(n_chunks_, std::memory_order_relaxed);  // the other chunks are not run
    }
  }
}

void ThreadPool::worker_loop(int ith) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      KESTREL_PAUSE();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      sleepers_.fetch_sub(1);
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load()) return;
    // Join the loop of this generation if it is still open; a later one or a
    // closed one is not ours to touch.
    uint64_t t = ticket_.load(std::memory_order_acquire);
    bool joined = false;
    while ((t & ~kCountMask) == ticket_id(gen) && !(t & kClosed)) {
      if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    claim_chunks(ith);
    ticket_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::run_chunks(int64_t n_chunks, const std::function<void(int64_t, int)>& fn) {
  if (n_chunks <= 0) return;
  if (n_threads_ == 1 || n_chunks == 1) {
    for (int64_t c = 0; c < n_chunks; ++c) fn(c, 0);
    return;
  }
  job_ = &fn;
  n_chunks_ = n_chunks;
  next_chunk_.store(0, std::memory_order_relaxed);
  const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
  ticket_.store(ticket_id(gen), std::memory_order_release);
  generation_.store(gen);  // seq_cst: ordered before the sleepers_ check below
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
  claim_chunks(0);
  // No chunk is left to claim: close the loop, then wait for those inside.
  ticket_.fetch_or(kClosed, std::memory_order_acq_rel);
  for (int spin = 0; (ticket_.load(std::memory_order_acquire) & kCountMask) != 0; ++spin) {
    if (spin < kCallerSpinsBeforeYield)
      KESTREL_PAUSE();
    else
      std::this_thread::yield();
  }
  job_ = nullptr;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  const int64_t chunks = std::min<int64_t>(n, n_threads_);
  const int64_t per = (n + chunks - 1) / chunks;
  run_chunks(chunks, [&](int64_t c, int ith) {
    const int64_t begin = std::min<int64_t>(n, per * c);
    const int64_t end = std::min<int64_t>(n, begin + per);
    if (begin < end) fn(begin, end, ith);
  });
}

void ThreadPool::parallel_for_dynamic(int64_t n, int64_t grain,
                                      const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  run_chunks((n + grain - 1) / grain, [&](int64_t c, int ith) { fn(c * grain, std::min(n, (c + 1) * grain), ith); });
}

}  // namespace kestrel
