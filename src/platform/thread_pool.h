#pragma once
// A persistent pool of worker threads for data-parallel loops. The caller thread
// takes part as worker 0. Workers spin briefly on an atomic generation counter
// before sleeping, because the forward pass issues a parallel region every few
// microseconds and a condition-variable wake-up alone costs tens of them.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kestrel {

class ThreadPool {
 public:
  // n_threads >= 1 (the caller counts as one). 0 means hardware_concurrency().
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(ith, nth) once on every thread and returns when all are done.
  // Not reentrant: fn must not call run() on the same pool.
  void run(const std::function<void(int ith, int nth)>& fn);

  // Splits [0, n) into contiguous chunks, one per thread: fn(begin, end, ith).
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end, int ith)>& fn);

  // Splits [0, n) into chunks of `grain`, handed out dynamically (for uneven work).
  void parallel_for_dynamic(int64_t n, int64_t grain,
                            const std::function<void(int64_t begin, int64_t end, int ith)>& fn);

 private:
  void worker_loop(int ith);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace kestrel
