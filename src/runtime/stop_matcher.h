#pragma once
// Holds back streamed text that could be the start of a stop string, so that a
// stop string split across tokens is never shown and is cut cleanly.
#include <string>
#include <vector>

namespace kestrel {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds text; returns what is safe to emit now. After a match, returns the text
  // before the stop string and matched() becomes true.
  std::string push(const std::string& text);
  // End of stream: returns whatever was held back (plus `tail`).
  std::string flush(const std::string& tail = "");
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool matched_ = false;
};

}  // namespace kestrel
