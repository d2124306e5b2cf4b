#pragma once
// Rounding helpers shared by the scalar quantizers (baseline translation units only).
#include <cstdint>
#include <cstring>

namespace kestrel::kernels::ref {

// Round to nearest, ties to even, for |x| < 2^22: adding 1.5 * 2^23 pushes the
// integer part into the low mantissa bits. Same results as ggml's helper, which
// the K-quant scale search depends on (a plain lround would break ties apart).
inline int nearest_int(float x) {
  const float biased = x + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &biased, sizeof(bits));
  return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace kestrel::kernels::ref
