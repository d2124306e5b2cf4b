// AMX availability: CPU bits, then Linux's permission for the tile data state.
// A baseline translation unit on purpose: it runs on every CPU.
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/amx/amx_kernels.h"
#include "platform/cpu.h"

namespace kestrel::kernels::amx {
namespace {

// Linux (5.16+) keeps AMX tile data disabled per process until asked for, so
// that processes not using it do not pay for its 8 KB of signal-frame state.
constexpr long kArchReqXcompPerm = 0x1023;
constexpr long kXfeatureXtileData = 18;

bool request_permission() {
  const CpuFeatures& f = cpu_features();
  if (!f.amx_tile || !f.amx_int8 || !isa_supported(Isa::Avx512)) return false;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
}

}  // namespace

bool available() {
  static const bool granted = request_permission();  // once, thread-safe (magic static)
  return granted;
}

}  // namespace kestrel::kernels::amx
