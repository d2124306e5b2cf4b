// CPU feature detection and the ISA choice: consistency of the detected
// features with the levels, the KESTREL_ISA cap rule, and name parsing.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/error.h"
#include "platform/cpu.h"

namespace kestrel {
namespace {

TEST(Cpu, LevelsFollowFeatures) {
  const CpuFeatures& f = cpu_features();
  EXPECT_TRUE(isa_supported(Isa::Scalar));
  EXPECT_EQ(isa_supported(Isa::Avx2), f.avx2 && f.fma && f.f16c && f.bmi2);
  EXPECT_EQ(isa_supported(Isa::Avx512),
            isa_supported(Isa::Avx2) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni);
  // Sub-features never without their foundation.
  if (f.avx512bw || f.avx512vl || f.avx512dq || f.avx512vnni || f.avx512bf16 || f.avx512fp16) {
    EXPECT_TRUE(f.avx512f);
  }
  if (f.amx_int8 || f.amx_bf16) {
    EXPECT_TRUE(f.amx_tile);
  }
}

TEST(Cpu, SupportedIsasAreOrderedAndContiguous) {
  const std::vector<Isa> isas = supported_isas();
  ASSERT_FALSE(isas.empty());
  for (size_t i = 0; i < isas.size(); ++i) EXPECT_EQ(static_cast<int>(isas[i]), static_cast<int>(i));
}

TEST(Cpu, BestIsaHonoursTheEnvironment) {
  const char* env = std::getenv("KESTREL_ISA");
  const Isa highest = supported_isas().back();
  try {
    const Isa want = cap_isa(highest, env);
    EXPECT_EQ(best_isa(), want);
    EXPECT_LE(static_cast<int>(best_isa()), static_cast<int>(highest));
  } catch (const Error&) {
    EXPECT_THROW(best_isa(), Error) << "an unparsable KESTREL_ISA must not be ignored";
  }
}

TEST(Cpu, CapRule) {
  EXPECT_EQ(cap_isa(Isa::Avx512, nullptr), Isa::Avx512);
  EXPECT_EQ(cap_isa(Isa::Avx512, ""), Isa::Avx512);
  EXPECT_EQ(cap_isa(Isa::Avx512, "  "), Isa::Avx512);
  EXPECT_EQ(cap_isa(Isa::Avx512, "avx2"), Isa::Avx2);
  EXPECT_EQ(cap_isa(Isa::Avx512, "SCALAR"), Isa::Scalar);
  // A cap never raises the level past what the CPU has.
  EXPECT_EQ(cap_isa(Isa::Avx2, "avx512"), Isa::Avx2);
  EXPECT_EQ(cap_isa(Isa::Scalar, "avx2"), Isa::Scalar);
  EXPECT_THROW(cap_isa(Isa::Avx512, "avx1024"), Error);
}

TEST(Cpu, ParseAndNameRoundTrip) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) EXPECT_EQ(parse_isa(isa_name(isa)), isa);
  EXPECT_EQ(parse_isa(" Avx512 "), Isa::Avx512);
  try {
    parse_isa("sse9");
    FAIL() << "no error for an unknown name";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sse9"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kestrel
