#pragma once
// AVX2 + FMA + F16C attention kernels (compiled with kernels/avx2's -m flags;
// reached only through the table of kernels/attention_set.cpp, which checks the
// CPU first). Same signatures and the same bits as the scalar twins:
//   attend_f16/f32, attend_tile_f16/f32  kernels/ref/attention_ref.cpp,
//                                        attention_tiled_ref.cpp
//   attend_quant, attend_tile_quant,     kernels/ref/attention_quant_ref.cpp
//   attend_sage_quant, attend_int8_quant (with the AVX2 format kernels)
//   attend_sage_f16, attend_int8_f16     kernels/ref/attention_sage_ref.cpp,
//   and their tiles                      attention_int8_ref.cpp
// Declarations only (kernels/avx2/avx2_kernels.h holds the format kernels).
#include <cstdint>

#include "kernels/attention_kernels.h"
#include "kernels/attention_quant.h"
#include "kernels/attention_tiled.h"

namespace kestrel::kernels::avx2 {

void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out);
// One GQA group (kernels/attention_set.h AttendGroupFn): each head gets
// attend_f16's / attend_f32's bits, the cache streamed once for all of them.
void attend_f16_group(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                      float* const* out);
void attend_f32_group(const KvBlocks<float>& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                      float* const* out);
void attend_tile_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch);
void attend_tile_f32(const KvBlocks<float>& kv, int d, const TileRows& rows, float scale, float* scratch);
// gather_kv_tile (kernels/attention_tiled.h) of an F16 cache with F16C, the
// same bits; d a multiple of 8. The AVX-512 tile uses it too.
void gather_f16_tile(const KvBlocks<uint16_t>& kv, int64_t k0, int nk, int d, float* kt, float* vt);

void attend_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_tile_quant(const KvQuantBlocks& kv, int d, const TileRows& rows, float scale, float* scratch);
void attend_sage_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_int8_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out);
// One GQA group at a time (kernels/attention_set.h AttendGroupFn): each head
// gets attend_quant's (Q8_0 keys) / attend_sage_quant's / attend_int8_quant's bits.
void attend_quant_group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                        float* const* out);
void attend_sage_quant_group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                             float* const* out);
void attend_int8_quant_group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                             float* const* out);

void attend_sage_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_tile_sage_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch);
void attend_int8_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out);
void attend_tile_int8_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch);

}  // namespace kestrel::kernels::avx2
