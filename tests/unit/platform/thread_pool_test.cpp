#include "platform/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace kestrel {

TEST(ThreadPool, RunCallsEveryWorkerOnce) {
  for (int n : {1, 2, 3, 4}) {
    ThreadPool pool(n);
    for (int rep = 0; rep < 2000; ++rep) {
      std::vector<std::atomic<int>> hits(n);
      pool.run([&](int ith, int nth) {
        ASSERT_EQ(nth, n);
        hits[ith].fetch_add(1);
      });
      for (int i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "threads " << n << " rep " << rep;
    }
  }
}

TEST(ThreadPool, ParallelForCoversRangeExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 5, 97, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << i;
    std::vector<std::atomic<int>> dyn(n);
    pool.parallel_for_dynamic(n, 7, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) dyn[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(dyn[i].load(), 1) << i;
  }
}

TEST(ThreadPool, SurvivesIdleSleepAndWake) {
  ThreadPool pool(2);
  std::atomic<int> sum{0};
  for (int rep = 0; rep < 3; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers fall asleep
    pool.run([&](int ith, int) { sum.fetch_add(ith + 1); });
  }
  EXPECT_EQ(sum.load(), 3 * (1 + 2));
}

}  // namespace kestrel
