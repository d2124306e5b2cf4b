#pragma once
// AMX-INT8 kernels (compiled with -mamx-tile -mamx-int8 and the AVX-512 flags;
// call only when available() says so). Declarations only (see kernels/blocks.h).
#include <cstdint>

namespace kestrel::kernels {
struct PanelFormat;
struct PanelGemmArgs;
}  // namespace kestrel::kernels

namespace kestrel::kernels::amx {

// True once the CPU has AMX-INT8 and AVX-512 and Linux granted this process the
// tile data state (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), asked
// on the first call only; thread-safe). Defined in a baseline translation unit.
bool available();

// Panel GEMM (kernels/packed_gemm.h) with tile instructions for each whole
// 16-token tile; the remaining tokens go through avx512::panel_gemm.
void panel_gemm(const PanelFormat& f, const PanelGemmArgs& args);

// Self-check of the tile configuration path (see amx_gemm.cpp): loads a tile
// config through ldtilecfg, multiplies signed A [16, 64] by unsigned B (16 rows
// of 64 bytes in the VNNI layout: B[k/4][4n + k%4]) with tdpbsud and
// writes C [16, 16] int32. The test compares it with a scalar product.
void tile_selftest(const int8_t* a, const uint8_t* b, int32_t* c);

}  // namespace kestrel::kernels::amx
