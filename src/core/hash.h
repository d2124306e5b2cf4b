#pragma once
// Small non-cryptographic hashes and streams, one definition each: splitmix64
// (seeded draws: synthetic weights, the sorting-free sampler's pivots, k-means++)
// and FNV-1a (names and fingerprints).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kestrel {

// splitmix64's output function: a bijective 64-bit mixer.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// splitmix64: advances `state` and returns its next draw.
inline uint64_t splitmix64(uint64_t& state) { return mix64(state += 0x9E3779B97F4A7C15ull); }

// FNV-1a over bytes fed in pieces.
struct Fnv1a {
  uint64_t h = 0xCBF29CE484222325ull;
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001B3ull;
  }
  void u64(uint64_t v) { bytes(&v, sizeof v); }
};

inline uint64_t fnv1a(std::string_view s) {
  Fnv1a f;
  f.bytes(s.data(), s.size());
  return f.h;
}

}  // namespace kestrel
