#pragma once
// Batched matmul kernels (n_tokens >= 2) on weights repacked into panels.
//
// Why a second layout: the dot product of one weight row with one activation row
// (vec_dot) sums 8 int32 lanes per block and needs a horizontal reduction per
// output. For a batch, the best register use is one output row per int32 lane:
// 16 weight rows side by side, each lane holding 4 consecutive quants of its
// row, times 4 activation bytes broadcast to every lane (vpdpbusd). After the
// 32 (or 16) elements of a group, lane r holds the exact integer dot product of
// row r with the activation group, scaled once per group, and the 16 results of
// a panel go to y with one store. The same layout is AMX's B-tile format.
//
// Panel layout (16 weight rows, `cols` elements), group after group:
//   quants  4-bit formats: G/8 vectors of 64 bytes; vector j, lane r (4 bytes):
//             bytes 4j..4j+3 of row r's G/2 nibble bytes; low nibbles are the
//             elements 4j..4j+3 of the group, high nibbles G/2+4j.. (Q4_0's order)
//           5- and 6-bit formats (Q5_0, Q5_1, Q5_K; Q6_K with G = 16): the
//             low 4 bits as above, then one vector of high bits: lane r, byte
//             b, bits h*k..h*k+h-1 are the high h bits of element 4k+b (h*G = 32)
//           IQ4_NL, IQ4_XS: nibbles as above holding indices; the quant is
//             kIq4nlUnsigned[index] (kIq4nlValues + 128, offset -128)
//           8-bit formats: G/4 vectors; vector j, lane r: elements 4j..4j+3 of row r
//           every quant is unsigned (0..15, 0..31, 0..63 or 0..255): the format's
//           offset is applied through the activation sum (see PanelFormat::offset)
//   scale   16 floats: the row's group scale (d, d*sc of the K quants); 16 F16
//           for the formats whose GGUF scale is F16 (PanelFormat::half_scales);
//           Q2_K, Q3_K, Q5_K, Q6_K, IQ4_XS: 16 int8 sc, the rows' d (16 F16 per 256
//           elements) after the last group (PanelFormat::sub_scales), scale =
//           float(d) * float(sc)
//   min     16 floats (or F16 as the scale), formats with a min only (Q4_1's m,
//           Q4_K's -dmin*m); Q2_K, Q5_K: 16 int8 -m, dmin after d, min =
//           float(dmin) * float(-m)
// Rows past the matrix end are zero (scale 0), so a partial panel computes zeros.
//
// Output for row r, token t, in this order (the documented summation order; the
// SIMD, AMX and scalar versions all follow it, so they agree bit for bit):
//   acc = 0, mins = 0
//   for each group g:  i    = offset * asum[t,g] + sum_k q[r,k] * a[t,k]   (int32, exact)
//                      acc  = fma(float(i), scale[r,g] * ascale[t,g], acc)
//                      mins = fma(min[r,g], amin[t,g], mins)          (formats with a min)
//   y = acc + mins  (acc alone without a min)
// Formats with int8 sub-scales (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) scale in
// integers first, as ggml's dot products do, and go to float once per super-block s:
//   isum = sum over the groups g of s:  sc[r,g] * i                   (int32, exact)
//   acc  = fma(float(isum), d[r,s] * ascale[t,s], acc)      (ascale is one per Q8_K block)
// The order does not depend on the number of tokens: a batch's rows are bit for
// bit those of one-token calls, so a sequence's logits do not depend on what it
// is batched with. (Q4_K and Q6_K batches had kept a float step per group, for
// prompt logits bit-identical to an older kernel; the integer order is closer
// to llama.cpp's on the Qwen2.5-0.5B and Gemma 3 fixtures and 6-19 % faster.)
// The min terms have their own sum, as in ggml's dot products (the weight's
// min and the quants' part largely cancel; mixing them into one running sum
// moved SmolLM2's logits further from llama.cpp's). Against vec_dot, which
// scales each block's integer sum and adds in its own order, results agree
// within the float-summation bound of the vec_dot tests.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/panel_types.h"
#include "platform/cpu.h"

namespace kestrel::kernels {

// Formats with panels: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K, IQ4_NL, IQ4_XS. nullptr for the rest.
const PanelFormat* panel_format(DType type);

// Bytes of one panel and of a whole matrix (rows rounded up to kPanelRows).
size_t panel_bytes(const PanelFormat& f, int64_t cols);
size_t packed_matrix_bytes(const PanelFormat& f, int64_t rows, int64_t cols);

// Repacks weight rows [16p, 16p+16) for p in [panel_begin, panel_end) of a
// `type` matrix in its GGUF layout (row_stride bytes apart) into `out` (the
// start of panel 0's storage). Scalar; done once per weight. `type` must have a
// panel format.
void pack_panels(DType type, const uint8_t* w, size_t row_stride, int64_t rows, int64_t cols,
                 int64_t panel_begin, int64_t panel_end, uint8_t* out);

// The cols / group ActGroup entries of one activation row (blocks of the
// weight type's vec_dot_type).
void activation_groups(DType type, const void* act_row, int64_t cols, ActGroup* out);

// The activation quants of whole 16-token tiles in the order the AMX kernel
// loads them: [tile][group][16 tokens][group bytes], so each A tile is one
// contiguous 512-byte (256 for Q6_K) read instead of 16 rows 2 KB apart.
// Tokens past the last whole tile are not copied.
size_t act_tiles_bytes(const PanelFormat& f, int64_t cols, int64_t n_tokens);
void pack_act_tiles(const PanelFormat& f, const uint8_t* act, size_t act_stride, int64_t cols, int64_t n_tokens,
                    uint8_t* out);

// The SIMD kernel for `isa` (lowered to what the CPU runs), or nullptr when that
// level has none (scalar: matmul keeps the row-by-row vec_dot path there).
// AVX-512 runs VNNI (kernels/avx512/panel_gemm_avx512.cpp), AVX2 forms the same
// products with vpmaddubsw + vpmaddwd (kernels/avx2/panel_gemm_avx2.cpp).
// The scalar twin is ref::panel_gemm (kernels/ref/ref_panel_gemm.h).
PanelGemmFn panel_gemm(DType type, Isa isa);

// The AMX-INT8 version when the CPU has AMX-INT8, `isa` is Avx512 and the OS
// granted the tile state (asked once, lazily; see kernels/amx/amx_kernels.h);
// nullptr otherwise. Whole 16-token tiles go through tile instructions, the
// rest of the tokens through the AVX-512 kernel.
PanelGemmFn panel_gemm_amx(DType type, Isa isa);

}  // namespace kestrel::kernels
