// N-gram lookup drafting against a brute-force reading of its rule: the last
// n tokens' latest earlier occurrence, and up to m (and n_max) tokens after it.
#include "runtime/ngram_drafter.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/error.h"

namespace kestrel {
namespace {

std::vector<int32_t> brute_force(const std::vector<int32_t>& c, int n, int m, int n_max) {
  const int len = static_cast<int>(c.size());
  for (int j = len - n - 1; j >= 0; --j) {
    bool same = true;
    for (int k = 0; k < n; ++k) same = same && c[j + k] == c[len - n + k];
    if (!same) continue;
    std::vector<int32_t> out;
    for (int k = j + n; k < len && static_cast<int>(out.size()) < std::min(m, n_max); ++k) out.push_back(c[k]);
    return out;
  }
  return {};
}

TEST(NgramDrafter, ProposesWhatFollowedTheLatestEarlierOccurrence) {
  NgramDrafter d(2, 3);
  std::vector<int32_t> out;
  // "1 2 9 8 7 | 1 2 5 6 | 1 2": the latest earlier "1 2" is followed by 5 6 1.
  d.draft(std::vector<int32_t>{1, 2, 9, 8, 7, 1, 2, 5, 6, 1, 2}, 16, out);
  EXPECT_EQ(out, (std::vector<int32_t>{5, 6, 1}));
  d.draft(std::vector<int32_t>{1, 2, 9, 8, 7, 1, 2, 5, 6, 1, 2}, 2, out);  // n_max caps
  EXPECT_EQ(out, (std::vector<int32_t>{5, 6}));
  d.draft(std::vector<int32_t>{1, 2, 3, 4}, 16, out);  // no earlier occurrence
  EXPECT_TRUE(out.empty());
  d.draft(std::vector<int32_t>{7, 7, 7}, 16, out);  // overlapping: 7 7 at 0 is followed by 7
  EXPECT_EQ(out, (std::vector<int32_t>{7}));
}

TEST(NgramDrafter, MatchesBruteForceOnRandomSequences) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + trial % 4, m = 1 + trial % 7, n_max = 1 + trial % 5;
    std::uniform_int_distribution<int32_t> tok(0, 2 + trial % 5);
    std::vector<int32_t> c(static_cast<size_t>(1 + trial % 60));
    for (auto& t : c) t = tok(rng);
    NgramDrafter d(n, m);
    std::vector<int32_t> out;
    d.draft(c, n_max, out);
    EXPECT_EQ(out, brute_force(c, n, m, n_max)) << "trial " << trial;
  }
}

TEST(NgramDrafter, RefusesEmptyGrams) {
  EXPECT_THROW(NgramDrafter(0, 4), Error);
  EXPECT_THROW(NgramDrafter(3, 0), Error);
}

}  // namespace
}  // namespace kestrel
