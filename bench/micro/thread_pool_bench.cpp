// Thread pool overheads (platform/thread_pool.h), on a 2-thread pool:
//  thread_pool/run_empty: one parallel_for with one chunk per thread and no work,
//    i.e. waking the worker and the wait at the end (the cost of every parallel region of a forward pass);
//  thread_pool/parallel_for_empty and parallel_for_dynamic_empty: the same
//    through the loop helpers (16 items, grain 1 for the dynamic one).
#include <benchmark/benchmark.h>

#include <atomic>

#include "platform/thread_pool.h"

namespace kestrel {
namespace {

ThreadPool& pool() {
  static ThreadPool p(2);
  return p;
}

void bench_run(benchmark::State& state) {
  std::atomic<int> sink{0};
  for (auto _ : state) pool().parallel_for(pool().size(), [&](int64_t b, int64_t, int) { sink.fetch_add(b, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}

void bench_parallel_for(benchmark::State& state) {
  std::atomic<int64_t> sink{0};
  for (auto _ : state) pool().parallel_for(16, [&](int64_t b, int64_t e, int) { sink.fetch_add(e - b, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}

void bench_parallel_for_dynamic(benchmark::State& state) {
  std::atomic<int64_t> sink{0};
  for (auto _ : state)
    pool().parallel_for_dynamic(16, 1, [&](int64_t b, int64_t e, int) { sink.fetch_add(e - b, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}

BENCHMARK(bench_run)->Name("thread_pool/run_empty")->UseRealTime();
BENCHMARK(bench_parallel_for)->Name("thread_pool/parallel_for_empty")->UseRealTime();
BENCHMARK(bench_parallel_for_dynamic)->Name("thread_pool/parallel_for_dynamic_empty")->UseRealTime();

}  // namespace
}  // namespace kestrel
