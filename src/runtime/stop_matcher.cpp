#include "runtime/stop_matcher.h"

#include <algorithm>

namespace kestrel {

std::string StopMatcher::push(const std::string& text) {
  if (matched_) return "";
  pending_ += text;
  // A full match anywhere: emit up to the earliest one.
  size_t best = std::string::npos;
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    const size_t at = pending_.find(s);
    if (at != std::string::npos) best = std::min(best, at);
  }
  if (best != std::string::npos) {
    matched_ = true;
    std::string out = pending_.substr(0, best);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - (s.empty() ? 0 : 1), pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::flush(const std::string& tail) {
  std::string out = push(tail);
  if (matched_) return out;
  out += pending_;
  pending_.clear();
  return out;
}

}  // namespace kestrel
