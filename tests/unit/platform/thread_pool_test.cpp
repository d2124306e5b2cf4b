#include "platform/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kestrel {

// More threads than this machine's 2 cores: workers are often not running when
// a loop starts, so the caller runs their chunks (late workers must not run a
// chunk twice or touch a later loop's chunks).
TEST(ThreadPool, EveryChunkRunsOnceWithAValidThreadIndex) {
  for (int n : {1, 2, 3, 4}) {
    ThreadPool pool(n);
    for (int rep = 0; rep < 2000; ++rep) {
      const int64_t items = 1 + rep % 9;
      std::vector<std::atomic<int>> hits(items);
      std::atomic<int> bad_ith{0};
      pool.parallel_for(items, [&](int64_t b, int64_t e, int ith) {
        if (ith < 0 || ith >= n) bad_ith.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      ASSERT_EQ(bad_ith.load(), 0);
      for (int64_t i = 0; i < items; ++i) ASSERT_EQ(hits[i].load(), 1) << "threads " << n << " rep " << rep;
    }
  }
}

// A chunk that throws, on whichever thread runs it: the caller gets the
// exception after the loop (not std::terminate on a worker), and the pool
// runs the next loops as before.
TEST(ThreadPool, AChunksExceptionReachesTheCaller) {
  for (int n : {1, 2, 4}) {
    ThreadPool pool(n);
    for (int rep = 0; rep < 200; ++rep) {
      const int64_t bad = rep % 7;
      try {
        pool.parallel_for_dynamic(7, 1, [&](int64_t b, int64_t, int) {
          if (b == bad) throw std::runtime_error("chunk " + std::to_string(b));
        });
        FAIL() << "no exception, threads " << n;
      } catch (const std::runtime_error& e) {
        ASSERT_EQ(std::string(e.what()), "chunk " + std::to_string(bad));
      }
      std::atomic<int64_t> sum{0};
      pool.parallel_for(100, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
      });
      ASSERT_EQ(sum.load(), 4950);
    }
  }
}

TEST(ThreadPool, StaticSplitIsContiguousAndEqual) {
  ThreadPool pool(3);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::mutex m;
  pool.parallel_for(10, [&](int64_t b, int64_t e, int) {
    std::lock_guard<std::mutex> lock(m);
    ranges.emplace_back(b, e);
  });
  std::sort(ranges.begin(), ranges.end());
  const std::vector<std::pair<int64_t, int64_t>> want = {{0, 4}, {4, 8}, {8, 10}};
  EXPECT_EQ(ranges, want);
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
    pool.parallel_for(2, [&](int64_t b, int64_t, int) { sum.fetch_add(static_cast<int>(b) + 1); });
  }
  EXPECT_EQ(sum.load(), 3 * (1 + 2));
}

}  // namespace kestrel
