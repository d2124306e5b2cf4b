#include "platform/cpu.h"
#include "platform/dispatch.h"

#include <cpuid.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace kestrel {
namespace {

struct CpuidRegs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(uint32_t leaf, uint32_t subleaf) {
  CpuidRegs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return CpuidRegs{};
  return r;
}

// XCR0 says which register state the OS saves on a context switch. A CPU may
// have AVX-512 while the OS (or hypervisor) does not enable the ZMM state; then
// the instructions fault, so the feature counts as absent. Inline asm rather
// than _xgetbv, which would need -mxsave on this baseline translation unit.
uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool bit(uint32_t reg, int n) { return ((reg >> n) & 1u) != 0; }

CpuFeatures detect() {
  CpuFeatures f;
  const uint32_t max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 1) return f;
  const CpuidRegs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.ecx, 27);
  const bool avx = bit(l1.ecx, 28);
  const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  // XCR0 bits: 1 SSE, 2 AVX (YMM upper halves), 5 opmask, 6 ZMM_Hi256,
  // 7 Hi16_ZMM, 17 XTILECFG, 18 XTILEDATA.
  const bool os_ymm = osxsave && (xcr0 & 0x6) == 0x6;
  const bool os_zmm = os_ymm && (xcr0 & 0xE0) == 0xE0;
  const bool os_tile = osxsave && (xcr0 & 0x60000) == 0x60000;

  const bool ymm = avx && os_ymm;
  f.fma = ymm && bit(l1.ecx, 12);
  f.f16c = ymm && bit(l1.ecx, 29);
  if (max_leaf < 7) return f;

  const CpuidRegs l7 = cpuid(7, 0);
  const CpuidRegs l7s1 = l7.eax >= 1 ? cpuid(7, 1) : CpuidRegs{};
  f.avx2 = ymm && bit(l7.ebx, 5);
  f.bmi2 = bit(l7.ebx, 8);
  f.avx512f = os_zmm && bit(l7.ebx, 16);
  const bool z = f.avx512f;
  f.avx512dq = z && bit(l7.ebx, 17);
  f.avx512bw = z && bit(l7.ebx, 30);
  f.avx512vl = z && bit(l7.ebx, 31);
  f.avx512vnni = z && bit(l7.ecx, 11);
  f.avx512fp16 = z && bit(l7.edx, 23);
  f.avx512bf16 = z && bit(l7s1.eax, 5);
  // Linux additionally wants arch_prctl(ARCH_REQ_XCOMP_PERM) before the first
  // tile instruction; whoever uses AMX asks for it.
  f.amx_bf16 = os_tile && bit(l7.edx, 22);
  f.amx_tile = os_tile && bit(l7.edx, 24);
  f.amx_int8 = os_tile && bit(l7.edx, 25);
  return f;
}

std::string lower_trimmed(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out(s.substr(b, e - b));
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Isa highest_supported() {
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}


}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string cpu_description() {
  std::string brand;
  if (cpuid(0x80000000u, 0).eax >= 0x80000004u) {
    for (uint32_t leaf = 0x80000002u; leaf <= 0x80000004u; ++leaf) {
      const CpuidRegs r = cpuid(leaf, 0);
      for (uint32_t v : {r.eax, r.ebx, r.ecx, r.edx})
        for (int i = 0; i < 4; ++i) brand += static_cast<char>((v >> (8 * i)) & 0xFF);
    }
  }
  brand = brand.substr(0, brand.find('\0'));
  while (!brand.empty() && brand.back() == ' ') brand.pop_back();
  while (!brand.empty() && brand.front() == ' ') brand.erase(brand.begin());
  if (brand.empty()) brand = "unknown CPU";
  const CpuFeatures& f = cpu_features();
  std::string flags;
  for (const auto& [on, name] : {std::pair{f.avx2, "avx2"},
                                 {f.fma, "fma"},
                                 {f.f16c, "f16c"},
                                 {f.avx512f, "avx512f"},
                                 {f.avx512bw, "avx512bw"},
                                 {f.avx512vnni, "avx512vnni"},
                                 {f.avx512bf16, "avx512bf16"},
                                 {f.avx512fp16, "avx512fp16"},
                                 {f.amx_int8, "amx-int8"},
                                 {f.amx_bf16, "amx-bf16"}})
    if (on) flags += std::string(flags.empty() ? "" : " ") + name;
  return brand + " (" + (flags.empty() ? "no SIMD extensions" : flags) + ")";
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Scalar:
      return true;
    case Isa::Avx2:
      // The AVX2 translation units are built with -mavx2 -mfma -mf16c -mbmi2.
      return f.avx2 && f.fma && f.f16c && f.bmi2;
    case Isa::Avx512:
      return isa_supported(Isa::Avx2) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
             f.avx512vnni;
  }
  return false;
}

Isa cap_isa(Isa highest, const char* env_value) {
  if (env_value == nullptr || lower_trimmed(env_value).empty()) return highest;
  const Isa cap = parse_isa(env_value);
  return static_cast<int>(cap) < static_cast<int>(highest) ? cap : highest;
}

// KESTREL_ISA is read once; an unknown value throws on every call (the static
// is only set once parsing succeeded), so a typo is never silently ignored.
Isa best_isa() {
  static const Isa best = cap_isa(highest_supported(), std::getenv("KESTREL_ISA"));
  return best;
}

Isa runnable_isa(Isa isa) {
  while (isa != Isa::Scalar && !isa_supported(isa)) isa = static_cast<Isa>(static_cast<int>(isa) - 1);
  return isa;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return "scalar";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "unknown";
}

Isa parse_isa(std::string_view name) {
  const std::string n = lower_trimmed(name);
  if (n == "scalar" || n == "ref" || n == "none") return Isa::Scalar;
  if (n == "avx2") return Isa::Avx2;
  if (n == "avx512" || n == "avx-512") return Isa::Avx512;
  fail("unknown instruction set '", name, "' (expected scalar, avx2 or avx512)");
}

}  // namespace kestrel
