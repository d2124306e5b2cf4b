// DraftTree (runtime/draft_tree.h): depth-first order enforced, and the
// paths, depths, children and leaves the verifier walks, on small trees
// written out by hand.
#include "runtime/draft_tree.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace kestrel {
namespace {

// pending -> 10 -> 11 -> 12
//                \-> 13
//         -> 20 -> 21
//         -> 30
DraftTree sample_tree() {
  DraftTree t;
  const int32_t a = t.add(10, -1);
  const int32_t b = t.add(11, a);
  t.add(12, b);
  t.add(13, a);
  t.add(21, t.add(20, -1));
  t.add(30, -1);
  return t;
}

TEST(DraftTree, WalksPathsChildrenAndLeaves) {
  const DraftTree t = sample_tree();
  ASSERT_EQ(t.size(), 7);
  EXPECT_FALSE(t.is_chain());
  std::vector<int32_t> v;
  t.children(-1, v);
  EXPECT_EQ(v, (std::vector<int32_t>{0, 4, 6}));
  t.children(0, v);
  EXPECT_EQ(v, (std::vector<int32_t>{1, 3}));
  t.children(2, v);
  EXPECT_TRUE(v.empty());
  t.path(2, v);
  EXPECT_EQ(v, (std::vector<int32_t>{0, 1, 2}));
  t.path(5, v);
  EXPECT_EQ(v, (std::vector<int32_t>{4, 5}));
  t.path(-1, v);
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(t.depth(3), 2);
  EXPECT_EQ(t.depth(6), 1);
  std::vector<int32_t> leaves;
  for (int32_t i = 0; i < t.size(); ++i)
    if (t.is_leaf(i)) leaves.push_back(i);
  EXPECT_EQ(leaves, (std::vector<int32_t>{2, 3, 5, 6}));
  EXPECT_EQ(t.leaves(v), 3);  // the deepest branch: 10 -> 11 -> 12
  EXPECT_EQ(v, leaves);
}

TEST(DraftTree, ChainsAreTreesWithOneBranch) {
  DraftTree t;
  const std::vector<int32_t> chain = {5, 6, 7};
  t.assign_chain(chain);
  EXPECT_TRUE(t.is_chain());
  EXPECT_EQ(t.parent, (std::vector<int32_t>{-1, 0, 1}));
  EXPECT_TRUE(t.is_leaf(2));
  EXPECT_FALSE(t.is_leaf(1));
  DraftTree empty;
  EXPECT_TRUE(empty.is_chain());
}

TEST(DraftTree, RefusesNodesOutOfDepthFirstOrder) {
  DraftTree t = sample_tree();
  EXPECT_THROW(t.add(1, 1), Error);  // node 1's subtree closed when node 3 came
  EXPECT_THROW(t.add(1, 4), Error);  // nor is 4 (after 6)
  EXPECT_THROW(t.add(1, 7), Error);  // no such node
  EXPECT_NO_THROW(t.add(31, 6));     // the last node
  EXPECT_NO_THROW(t.add(40, -1));    // a new branch from the pending token
}

}  // namespace
}  // namespace kestrel
