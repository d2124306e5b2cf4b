#pragma once
// The message of the kestrel::Error that f throws, or "<no error>": tests check
// that bad input is refused with the words a user needs.
#include <string>

#include "core/error.h"

namespace kestrel::testing {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace kestrel::testing
