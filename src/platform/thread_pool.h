#pragma once
// A persistent pool of worker threads for data-parallel loops. The caller thread
// takes part as worker 0. Workers spin briefly on an atomic generation counter
// before sleeping, because the forward pass issues a parallel region every few
// microseconds and a condition-variable wake-up alone costs tens of them.
//
// A loop is cut into chunks that the threads claim one at a time, and a worker
// joins a loop only while it is open: when the caller has run out of chunks it
// closes the loop and waits only for the workers that joined. So a worker that
// is not running when the loop starts (the other core is busy with another
// process) costs nothing: the caller runs its chunks and goes on, instead of
// waiting a scheduler time slice for it at every one of the ~300 loops of a
// decode step.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
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

  // Splits [0, n) into size() contiguous chunks of equal size (the last ones
  // shorter or empty): fn(begin, end, ith), ith being the thread that runs the
  // chunk (< size(); use it for per-thread scratch, not to find the range).
  // Not reentrant: fn must not use the same pool. When fn throws, on any
  // thread, the chunks not yet started are skipped and the first exception
  // is rethrown here once every thread has left the loop.
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end, int ith)>& fn);

  // Splits [0, n) into chunks of `grain`, handed out dynamically (for uneven work).
  void parallel_for_dynamic(int64_t n, int64_t grain,
                            const std::function<void(int64_t begin, int64_t end, int ith)>& fn);

 private:
  // Runs fn(chunk, ith) once for every chunk in [0, n_chunks), spread over the
  // threads that join (the caller always does).
  void run_chunks(int64_t n_chunks, const std::function<void(int64_t chunk, int ith)>& fn);
  void claim_chunks(int ith);
  void worker_loop(int ith);

  int n_threads_;
  std::vector<std::thread> workers_;
  // The open loop: set by the caller before it publishes the generation.
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_chunk_{0};
  std::atomic<uint64_t> generation_{0};
  // (generation's low 32 bits << 32) | kClosed bit | number of workers inside.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;  // the loop's first exception, for the caller
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace kestrel
