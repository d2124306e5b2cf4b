// The kept inputs of a TEAL decode step as pairs with 7-bit codes, for the
// paired Nibble kernels (kernels/sparse_columns.h). One scalar version: it
// runs once per step over the kept inputs (hundreds), the kernels then over
// every chunk.
#include <cmath>

#include "core/error.h"
#include "kernels/sparse_columns.h"

namespace kestrel::kernels {

namespace {
constexpr int kCodeMax = 63;  // 7 bits: sparse_columns.h says why
}

int64_t max_input_pairs(const ColumnLayout& layout) { return layout.groups() * ((layout.group + 1) / 2); }

void pair_inputs(const ColumnLayout& layout, const ActiveInputs& in, InputPair* pair, int32_t* group_begin,
                 float* group_scale, float* group_sum) {
  // 16 pairs of 4-bit codes times 7-bit codes is what an int16 sum holds.
  if (layout.codes != ColumnCodes::Nibble || layout.group > 32)
    fail("teal_act=a7: paired inputs need 4-bit columns in groups of at most 32");
  const size_t column = layout.column_bytes(), scales = layout.scale_bytes();
  int32_t n = 0;
  for (int64_t g = 0; g < layout.groups(); ++g) {
    group_begin[g] = n;
    const int32_t begin = in.group_begin[g], end = in.group_begin[g + 1];
    float amax = 0.0f;
    for (int32_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(in.value[i]));
    group_scale[g] = amax / kCodeMax;
    group_sum[g] = 0.0f;
    if (!(amax > 0.0f)) continue;  // nothing kept, or only zeros: nothing to add
    const float inverse = kCodeMax / amax;
    const size_t base = static_cast<size_t>(g) * layout.group_bytes() + scales;
    const int64_t first = g * layout.group;
    int32_t code_sum = 0;
    for (int32_t i = begin; i < end; i += 2) {
      const bool lone = i + 1 == end;
      const auto code = [&](int32_t k) {
        const long q = std::lrint(in.value[k] * inverse);
        return static_cast<int>(q < -kCodeMax ? -kCodeMax : q > kCodeMax ? kCodeMax : q);
      };
      const int qa = code(i), qb = lone ? 0 : code(i + 1);
      code_sum += qa + qb;
      const auto offset = [&](int32_t k) {
        return static_cast<uint32_t>(base + static_cast<size_t>(in.index[k] - first) * column);
      };
      pair[n++] = InputPair{offset(i), lone ? offset(i) : offset(i + 1),
                            static_cast<uint16_t>(static_cast<uint8_t>(qa) | static_cast<uint8_t>(qb) << 8),
                            static_cast<uint16_t>(g)};
    }
    group_sum[g] = group_scale[g] * static_cast<float>(code_sum);
  }
  group_begin[layout.groups()] = n;
}

}  // namespace kestrel::kernels
