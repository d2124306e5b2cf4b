#pragma once
// A draft with alternatives (speculative decoding's token tree): the tokens a
// drafter proposes after the pending token, each with its parent (-1: it
// follows the pending token itself), in depth-first order: a node's subtree
// comes right after it, so every branch (the path from the pending token to a
// leaf) adds its own nodes as one contiguous run. A chain is the tree whose
// node i has parent i - 1. The target verifies every branch in one pass
// (Session::verify_tree) and takes the longest path it agrees with.
#include <cstdint>
#include <span>
#include <vector>

namespace kestrel {

struct DraftTree {
  std::vector<int32_t> tokens;
  std::vector<int32_t> parent;

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  bool empty() const { return tokens.empty(); }
  void clear() {
    tokens.clear();
    parent.clear();
  }
  // Appends a node; returns its index. Throws unless parent is -1 or a node
  // whose subtree is still open (depth-first order).
  int32_t add(int32_t token, int32_t parent_node);
  // Replaces the tree by a chain of these tokens.
  void assign_chain(std::span<const int32_t> chain);
  bool is_chain() const;
  // Nodes from the pending token's first child down to `node`, root first.
  void path(int32_t node, std::vector<int32_t>& out) const;
  // Number of nodes on path(node).
  int64_t depth(int32_t node) const;
  // Whether no node names `node` as its parent.
  bool is_leaf(int32_t node) const { return node + 1 >= size() || parent[static_cast<size_t>(node) + 1] != node; }
  // The leaves, in order (branch b ends at the b-th), and the deepest one's depth.
  int64_t leaves(std::vector<int32_t>& out) const;
  // The children of `node` (-1: of the pending token), in order.
  void children(int32_t node, std::vector<int32_t>& out) const;
};

}  // namespace kestrel
