#pragma once
// The one error type for bad input (files, requests, flags). The CLI and the
// server catch it at their boundary; the library never aborts on user input.
#include <sstream>
#include <stdexcept>
#include <string>

namespace kestrel {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// fail("tensor ", name, " has ", n, " dims") throws Error with the parts joined.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

}  // namespace kestrel
