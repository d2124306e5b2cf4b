#include "runtime/draft_tree.h"

#include <algorithm>

#include "core/error.h"

namespace kestrel {

int32_t DraftTree::add(int32_t token, int32_t parent_node) {
  // Depth-first: the parent is the last node or one of its ancestors.
  int32_t open = tokens.empty() ? -1 : static_cast<int32_t>(tokens.size()) - 1;
  while (open != parent_node && open >= 0) open = parent[static_cast<size_t>(open)];
  if (open != parent_node)
    fail("draft tree: node ", tokens.size(), " names parent ", parent_node,
         ", which is not on the open path (nodes come in depth-first order)");
  tokens.push_back(token);
  parent.push_back(parent_node);
  return static_cast<int32_t>(tokens.size()) - 1;
}

void DraftTree::assign_chain(std::span<const int32_t> chain) {
  clear();
  for (size_t i = 0; i < chain.size(); ++i) {
    tokens.push_back(chain[i]);
    parent.push_back(static_cast<int32_t>(i) - 1);
  }
}

bool DraftTree::is_chain() const {
  for (size_t i = 0; i < parent.size(); ++i)
    if (parent[i] != static_cast<int32_t>(i) - 1) return false;
  return true;
}

void DraftTree::path(int32_t node, std::vector<int32_t>& out) const {
  out.clear();
  for (int32_t n = node; n >= 0; n = parent[static_cast<size_t>(n)]) out.push_back(n);
  std::reverse(out.begin(), out.end());
}

int64_t DraftTree::depth(int32_t node) const {
  int64_t d = 0;
  for (int32_t n = node; n >= 0; n = parent[static_cast<size_t>(n)]) ++d;
  return d;
}

int64_t DraftTree::leaves(std::vector<int32_t>& out) const {
  out.clear();
  int64_t deepest = 0;
  for (int32_t i = 0; i < size(); ++i)
    if (is_leaf(i)) {
      out.push_back(i);
      deepest = std::max(deepest, depth(i));
    }
  return deepest;
}

void DraftTree::children(int32_t node, std::vector<int32_t>& out) const {
  out.clear();
  for (size_t i = static_cast<size_t>(node) + 1; i < parent.size(); ++i)
    if (parent[i] == node) out.push_back(static_cast<int32_t>(i));
}

}  // namespace kestrel
