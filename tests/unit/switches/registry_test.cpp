#include "switches/registry.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace kestrel {

TEST(Switches, ParsesAndValidatesSettings) {
  auto list = parse_switch_list("isa=scalar,kv=f32;threads=1");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].label(), "isa=scalar");
  EXPECT_EQ(list[1].value, "f32");
  EXPECT_EQ(list[2].name, "threads");
  EXPECT_THROW(parse_switch("nope=1"), Error);
  EXPECT_THROW(parse_switch("kv=q9"), Error);
  EXPECT_THROW(parse_switch("threads=0"), Error);
  EXPECT_THROW(parse_switch("threads=two"), Error);
  EXPECT_THROW(parse_switch("kv"), Error);
  EXPECT_THROW(parse_switch("=f16"), Error);
  EXPECT_EQ(parse_switch("matmul=vecdot").value, "vecdot");
  EXPECT_THROW(parse_switch("matmul=gpu"), Error);
}

TEST(Switches, EverySwitchNamesWhatItChangesAndScalarAlwaysRuns) {
  for (const auto& s : switch_specs()) {
    EXPECT_FALSE(s.changes.empty()) << s.name;
    EXPECT_TRUE(static_cast<bool>(s.unsupported)) << s.name;
  }
  EXPECT_EQ(find_switch("isa").unsupported("scalar"), "");
}

}  // namespace kestrel
