#include "core/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <span>
#include <string>

#include "core/error.h"

namespace kestrel {
namespace {

constexpr std::array kTraits = {
    DTypeTraits{DType::F32, "f32", 1, 4},
    DTypeTraits{DType::F16, "f16", 1, 2},
    DTypeTraits{DType::Q4_0, "q4_0", 32, 2 + 16},
    DTypeTraits{DType::Q4_1, "q4_1", 32, 2 + 2 + 16},
    DTypeTraits{DType::Q5_0, "q5_0", 32, 2 + 4 + 16},
    DTypeTraits{DType::Q5_1, "q5_1", 32, 2 + 2 + 4 + 16},
    DTypeTraits{DType::Q8_0, "q8_0", 32, 2 + 32},
    DTypeTraits{DType::Q8_1, "q8_1", 32, 2 + 2 + 32},
    DTypeTraits{DType::Q2_K, "q2_K", 256, 16 + 64 + 2 + 2},
    DTypeTraits{DType::Q3_K, "q3_K", 256, 32 + 64 + 12 + 2},
    DTypeTraits{DType::Q4_K, "q4_K", 256, 2 + 2 + 12 + 128},
    DTypeTraits{DType::Q5_K, "q5_K", 256, 2 + 2 + 12 + 32 + 128},
    DTypeTraits{DType::Q6_K, "q6_K", 256, 128 + 64 + 16 + 2},
    DTypeTraits{DType::Q8_K, "q8_K", 256, 4 + 256 + 2 * 16},
    DTypeTraits{DType::IQ4_NL, "iq4_nl", 32, 2 + 16},
    DTypeTraits{DType::IQ4_XS, "iq4_xs", 256, 2 + 2 + 4 + 128},
    DTypeTraits{DType::I8, "i8", 1, 1},
    DTypeTraits{DType::I16, "i16", 1, 2},
    DTypeTraits{DType::I32, "i32", 1, 4},
    DTypeTraits{DType::I64, "i64", 1, 8},
    DTypeTraits{DType::F64, "f64", 1, 8},
    DTypeTraits{DType::BF16, "bf16", 1, 2},
};

constexpr std::array kKvOnlyTraits = {
    DTypeTraits{DType::CQ2, "cq2", 4, 1},
    DTypeTraits{DType::CQ1, "cq1", 8, 1},
};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t id) {
  for (const auto& t : kTraits)
    if (static_cast<uint32_t>(t.type) == id) return t;
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  for (const auto& tr : kTraits)
    if (tr.type == t) return tr;
  for (const auto& tr : kKvOnlyTraits)
    if (tr.type == t) return tr;
  fail("unknown tensor type id ", static_cast<uint32_t>(t));
}

std::string_view dtype_name(DType t) { return traits(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (const auto& table : {std::span<const DTypeTraits>(kTraits), std::span<const DTypeTraits>(kKvOnlyTraits)})
    for (const auto& t : table) {
      std::string tn(t.name);
      std::transform(tn.begin(), tn.end(), tn.begin(), [](unsigned char c) { return std::tolower(c); });
      if (tn == lower) return t.type;
    }
  return std::nullopt;
}

}  // namespace kestrel
