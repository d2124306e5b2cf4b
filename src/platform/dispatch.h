#pragma once
// The one way a kernel is chosen for the CPU. A kernel family lists one
// candidate per Isa level (nullptr where a level has no version of its own);
// a request for level L is answered with the candidate of the highest level at
// or below L that the CPU runs and that has one. So a missing SIMD version
// falls back to the next lower level, never past what the CPU runs, and a
// request for a level the CPU lacks is lowered, not refused (`isa=` in the
// switch registry refuses it up front, with the reason).
#include <array>

#include "platform/cpu.h"

namespace kestrel {

constexpr int kIsaLevels = 3;  // Isa::Scalar, Isa::Avx2, Isa::Avx512

template <class Fn>
using PerIsa = std::array<Fn, kIsaLevels>;

// `isa` lowered to the highest level the CPU runs.
Isa runnable_isa(Isa isa);

// The candidate for `isa` (see above), or a null Fn when no level <= isa has
// one. `level`, when given, receives the level the candidate came from.
template <class Fn>
Fn pick_for_isa(const PerIsa<Fn>& candidates, Isa isa, Isa* level = nullptr) {
  for (int l = static_cast<int>(runnable_isa(isa)); l >= 0; --l)
    if (candidates[static_cast<size_t>(l)]) {
      if (level) *level = static_cast<Isa>(l);
      return candidates[static_cast<size_t>(l)];
    }
  if (level) *level = Isa::Scalar;
  return Fn{};
}

}  // namespace kestrel
