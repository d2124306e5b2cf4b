#pragma once
// Quantized block layouts, byte-identical to ggml's (GGUF files store these
// blocks as they are). Half-precision fields are raw IEEE binary16 bits.
// Only <cstdint> is included: the SIMD translation units include this header,
// and it must not bring inline code they would compile with their -m flags.
#include <cstdint>

namespace kestrel::kernels {

constexpr int kQK = 32;    // elements per block of the 32-wide formats
constexpr int kQKK = 256;  // elements per super-block of the K formats
constexpr int kKScaleBytes = 12;  // Q4_K/Q5_K: 8 6-bit scales + 8 6-bit mins

// x = (q - 8) * d; element j in the low nibble of qs[j], element j+16 in its high nibble.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "q4_0 block must be 18 bytes");

// x = q * d + m; nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20, "q4_1 block must be 20 bytes");

// x = (q - 16) * d; the fifth bit of element j is bit j of the little-endian qh.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "q5_0 block must be 22 bytes");

// x = q * d + m; bits as Q5_0.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "q5_1 block must be 24 bytes");

// x = q * d.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34, "q8_0 block must be 34 bytes");

// Activation format for Q4_1/Q5_1: s = d * sum(qs), so the weight's min term
// becomes m * s without touching the quants.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36, "q8_1 block must be 36 bytes");

// 16 sub-blocks of 16: x = d * (scales[j] & 0xF) * q - dmin * (scales[j] >> 4),
// q in 0..3. Element 128h + 32k + l: bits 2k of qs[32h + l]; sub-block
// 8h + 2k + l / 16.
struct BlockQ2K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2K) == 84, "q2_K block must be 84 bytes");

// 16 sub-blocks of 16: x = d * (sc[j] - 32) * q, q in -4..3: the low 2 bits as
// Q2_K's, minus 4 where bit 4h + k of hmask[l] is clear. The 6-bit sc[j] are
// packed in 12 bytes (see q3_scale).
struct BlockQ3K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3K) == 110, "q3_K block must be 110 bytes");

// Q3_K's sub-block scale j (0..63, 32 means 0): low 4 bits from byte j % 8
// (high nibble from j = 8 on), high 2 bits from byte 8 + j % 4 at bit 2 * (j / 4).
constexpr int q3_scale(const uint8_t* s, int j) {
  const int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return low | (high << 4);
}

// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], q in 0..15. scales packs
// the 6-bit sc/m (see k_scale_min); qs: 4 chunks of 32 bytes, low nibbles are
// sub-block 2c, high nibbles sub-block 2c+1.
struct BlockQ4K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4K) == 144, "q4_K block must be 144 bytes");

// As Q4_K with a fifth bit: element 32*j + l takes bit j of qh[l].
struct BlockQ5K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ5K) == 176, "q5_K block must be 176 bytes");

// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q in 0..63 (4 low bits in
// ql, 2 high bits in qh), laid out in two halves of 128 elements.
struct BlockQ6K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210, "q6_K block must be 210 bytes");

// The 16 values of the non-linear 4-bit formats (ggml's kvalues_iq4nl): a
// quant q stands for kIq4nlValues[q] times the block scale.
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// x = d * kIq4nlValues[q]; element j (< 16) in the low nibble of qs[j], j + 16
// in its high nibble (Q4_0's order).
struct BlockIQ4NL {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockIQ4NL) == 18, "iq4_nl block must be 18 bytes");

// 8 sub-blocks of 32: x = d * (ls[j] - 32) * kIq4nlValues[q]; the 6-bit ls[j]
// is nibble j % 2 of scales_l[j / 2] plus bits 2j..2j+1 of scales_h above it;
// sub-block j's quants are qs[16j..16j+16) in IQ4_NL's order.
struct BlockIQ4XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQKK / 64];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockIQ4XS) == 136, "iq4_xs block must be 136 bytes");

constexpr int iq4xs_scale(const BlockIQ4XS& b, int j) {
  return ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4);
}

// Activation format for the K quants: float scale, and the sums of each 16
// quants so the weight's min terms need no pass over the quants.
struct BlockQ8K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ8K) == 292, "q8_K block must be 292 bytes");

// Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block:
// j < 4 sit in the low 6 bits of bytes j and j+4; j >= 4 keep their low 4 bits in
// byte j+4 and their top 2 bits in the spare top bits of bytes j-4 and j.
// Internal linkage on purpose: an inline function with external linkage that an
// AVX-512 translation unit emits could be the copy the linker keeps for all.
namespace {
constexpr void k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}
}  // namespace

}  // namespace kestrel::kernels
