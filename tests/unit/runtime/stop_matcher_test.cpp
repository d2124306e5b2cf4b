#include "runtime/stop_matcher.h"

#include <gtest/gtest.h>

namespace kestrel {

TEST(StopMatcher, StopSplitAcrossPiecesIsNeverEmitted) {
  StopMatcher m({"<end>", "\n\n"});
  std::string out;
  for (const char* piece : {"Hello", " wor", "ld<e", "nd> more"}) out += m.push(piece);
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(out, "Hello world");
}

TEST(StopMatcher, HeldBackPrefixIsReleasedWhenItDoesNotMatch) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("abc ST"), "abc ");
  EXPECT_EQ(m.push("AY"), "STAY");
  EXPECT_EQ(m.push("ST"), "");
  EXPECT_EQ(m.flush(), "ST");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, EarliestStopWins) {
  StopMatcher m({"b", "ab"});
  EXPECT_EQ(m.push("xxab"), "xx");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("a"), "a");
  EXPECT_EQ(m.flush("b"), "b");
}

}  // namespace kestrel
