#pragma once
// CPU feature detection and the choice of kernel instruction set.
// KESTREL_ISA=scalar|avx2|avx512 caps the level (never raises it past what the
// CPU has), so every path can be tested and compared on one machine.
#include <string>
#include <string_view>
#include <vector>

namespace kestrel {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avx512fp16 = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
};

// Ordered: a higher level implies the lower ones.
enum class Isa : int {
  Scalar = 0,
  Avx2 = 1,    // AVX2 + FMA + F16C
  Avx512 = 2,  // AVX-512 F/BW/VL/DQ + VNNI
};

const CpuFeatures& cpu_features();
// The CPU's brand string and the features kernels use, one line: what every
// figure is reported with, and part of a measurement's fingerprint.
std::string cpu_description();
bool isa_supported(Isa isa);            // by the CPU (ignores KESTREL_ISA)
Isa best_isa();                         // highest supported, capped by KESTREL_ISA
std::vector<Isa> supported_isas();      // every level the CPU runs, lowest first
std::string_view isa_name(Isa isa);     // "scalar", "avx2", "avx512"
Isa parse_isa(std::string_view name);   // throws kestrel::Error on an unknown name
// The KESTREL_ISA rule alone (best_isa() applies it to the environment once):
// `highest` lowered to the level `env_value` names; nullptr or blank: no cap.
Isa cap_isa(Isa highest, const char* env_value);

}  // namespace kestrel
