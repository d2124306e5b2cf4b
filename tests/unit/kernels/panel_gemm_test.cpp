// Panel GEMM (kernels/packed_gemm.h):
//  - the scalar twin on packed panels against the row-by-row vec_dot of the
//    scalar table on the original rows, within the vec_dot tests' bound;
//  - every SIMD version the host runs (AVX2, AVX-512 VNNI, AMX-INT8) against
//    the scalar twin, bit for bit (same integer sums, same float operation order);
//  - odd shapes: rows not a multiple of 16 (AVX2: a second half of 1..7 rows,
//    or none), tokens not a multiple of the kernels' tiles (4 for AVX2, 8 for
//    VNNI, 16 for AMX), a single group, rows longer than the kernels' 1024-column
//    chunks;
//  - the AVX2 kernel's precondition: activation quants within -127..127;
//  - the AMX tile configuration path on a known product.
#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <utility>

#include "core/error.h"
#include "kernels/amx/amx_kernels.h"
#include "kernels/blocks.h"
#include "kernels/packed_gemm.h"
#include "kernels/ref/ref_panel_gemm.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kEps = 1.0 / (1 << 24);

const DType kPanelTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                             DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                             DType::IQ4_NL, DType::IQ4_XS};

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// A problem: weight rows (GGUF layout), activation rows (vec_dot_type) and their
// group data, the packed panels.
struct Problem {
  DType type;
  int64_t rows, cols, tokens;
  size_t w_stride, a_stride;
  std::vector<uint8_t> w, act, packed;
  std::vector<ActGroup> groups;
  std::vector<float> wd, ad, off;  // dequantized weights, activations, offset parts
};

Problem make_problem(DType type, int64_t rows, int64_t cols, int64_t tokens, uint32_t seed) {
  Problem p{type, rows, cols, tokens, row_bytes(type, cols), 0, {}, {}, {}, {}, {}, {}, {}};
  const DType at = quant_kernels(type, Isa::Scalar).vec_dot_type;
  p.a_stride = row_bytes(at, cols);
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t s = seed * 1000 + static_cast<uint32_t>(r);
    const Pattern pat = r % 3 == 0 ? Pattern::Normal : r % 3 == 1 ? Pattern::Mixed : Pattern::Outlier;
    // Formats without a quantizer (Q2_K, Q3_K): random blocks only.
    const bool can_quantize = quant_kernels(type, Isa::Scalar).quantize_row != nullptr;
    const std::vector<uint8_t> q =
        r % 2 || !can_quantize ? random_blocks(type, cols, s) : quantize(type, make_row(pat, cols, s), Isa::Scalar);
    p.w.insert(p.w.end(), q.begin(), q.end());
    const std::vector<float> d = dequantize(type, q, cols, Isa::Scalar);
    p.wd.insert(p.wd.end(), d.begin(), d.end());
    const std::vector<float> o = offset_parts(type, q, cols);
    p.off.insert(p.off.end(), o.begin(), o.end());
  }
  const PanelFormat& f = *panel_format(type);
  const int64_t n_groups = cols / f.group;
  p.groups.resize(static_cast<size_t>(n_groups * tokens));
  for (int64_t t = 0; t < tokens; ++t) {
    const Pattern pat = t % 4 == 0 ? Pattern::Normal : t % 4 == 1 ? Pattern::Uniform : t % 4 == 2 ? Pattern::Mixed : Pattern::Ties;
    const std::vector<uint8_t> a = quantize(at, make_row(pat, cols, seed * 77 + static_cast<uint32_t>(t)), Isa::Scalar);
    p.act.insert(p.act.end(), a.begin(), a.end());
    const std::vector<float> d = dequantize(at, a, cols, Isa::Scalar);
    p.ad.insert(p.ad.end(), d.begin(), d.end());
    activation_groups(type, a.data(), cols, p.groups.data() + t * n_groups);
  }
  p.packed.resize(packed_matrix_bytes(f, rows, cols));
  const int64_t panels = (rows + kPanelRows - 1) / kPanelRows;
  // Pack in two calls to cover panel ranges that do not start at 0.
  pack_panels(type, p.w.data(), p.w_stride, rows, cols, 0, panels / 2, p.packed.data());
  pack_panels(type, p.w.data(), p.w_stride, rows, cols, panels / 2, panels, p.packed.data());
  return p;
}

// y [tokens, rows] through a panel kernel, panel by panel, with ldy = rows;
// `one_token_calls`: one call per token (the decode path, n_tokens == 1).
std::vector<float> run(const Problem& p, PanelGemmFn fn, bool act_tiles = false, bool one_token_calls = false) {
  const PanelFormat& f = *panel_format(p.type);
  std::vector<uint8_t> tiles(act_tiles_bytes(f, p.cols, p.tokens) + 1);
  if (act_tiles) pack_act_tiles(f, p.act.data(), p.a_stride, p.cols, p.tokens, tiles.data());
  std::vector<float> y(static_cast<size_t>(p.tokens * p.rows), -12345.0f);
  const size_t groups_stride = static_cast<size_t>(p.cols / f.group);
  const int64_t panels = (p.rows + kPanelRows - 1) / kPanelRows;
  const int64_t per_call = one_token_calls ? 1 : p.tokens;
  for (int64_t t = 0; t < p.tokens; t += per_call)
    for (int64_t q = 0; q < panels; ++q) {
      const PanelGemmArgs args{p.cols,
                               p.packed.data() + static_cast<size_t>(q) * panel_bytes(f, p.cols),
                               static_cast<int>(std::min<int64_t>(kPanelRows, p.rows - q * kPanelRows)),
                               p.act.data() + static_cast<size_t>(t) * p.a_stride,
                               p.a_stride,
                               p.groups.data() + static_cast<size_t>(t) * groups_stride,
                               groups_stride,
                               per_call,
                               y.data() + t * p.rows + q * kPanelRows,
                               p.rows,
                               act_tiles ? tiles.data() : nullptr};
      fn(f, args);
    }
  return y;
}

struct Shape {
  int64_t rows, cols, tokens;
};

std::vector<Shape> shapes(DType type) {
  const int64_t bs = traits(type).block_size;
  // The AVX2 kernel's cases: tiles of 4 tokens one half at a time, tails of 3
  // (one half at a time), 2 or 1 (both halves at once, or the first alone when
  // a partial panel has 8 rows or fewer); 1280 columns: two column chunks
  // (one token: one pass over all columns, with the min terms in it).
  return {{1, bs, 1},       {16, bs, 2},   {17, 3 * bs, 3}, {33, 2 * bs, 9}, {5, 9 * bs, 17}, {48, 4 * bs, 33},
          {31, 2 * bs, 16}, {16, bs, 8},   {40, bs, 47},    {27, 2 * bs, 2}, {13, bs, 5},     {30, 3 * bs, 7},
          {24, 1280, 6},    {29, 1280, 5}, {9, 256, 1},     {24, 1280, 1},   {7, 1280, 1}};
}

TEST(PanelGemm, ScalarTwinMatchesVecDotOnOriginalRows) {
  for (DType type : kPanelTypes) {
    const auto& vd = quant_kernels(type, Isa::Scalar);
    uint32_t seed = 1;
    for (const Shape& s : shapes(type)) {
      const Problem p = make_problem(type, s.rows, s.cols, s.tokens, seed++);
      const std::vector<float> y = run(p, ref::panel_gemm);
      for (int64_t t = 0; t < p.tokens; ++t) {
        for (int64_t r = 0; r < p.rows; ++r) {
          const double want =
              vd.vec_dot(p.cols, p.w.data() + r * p.w_stride, p.act.data() + t * p.a_stride);
          double mag = 0;
          for (int64_t i = 0; i < p.cols; ++i) {
            const size_t wi = static_cast<size_t>(r * p.cols + i), ai = static_cast<size_t>(t * p.cols + i);
            mag += (std::fabs(p.wd[wi]) + std::fabs(p.off[wi])) * std::fabs(p.ad[ai]);
          }
          // The vec_dot tests' bound: each side sums at most n/32 + a few terms.
          const double bound = 2.0 * (static_cast<double>(p.cols) / 32 + 8) * kEps * mag + 1e-30;
          const double got = y[static_cast<size_t>(t * p.rows + r)];
          ASSERT_LE(std::fabs(got - want), bound)
              << dtype_name(type) << " rows=" << p.rows << " cols=" << p.cols << " tokens=" << p.tokens << " at row "
              << r << " token " << t << ": panel " << got << " vec_dot " << want << " (bound " << bound << ")";
        }
      }
    }
  }
}

// fn_for(type): the kernel under test for that format, or nullptr to skip it.
template <typename FnFor>
void expect_bit_identical(FnFor fn_for, const char* name, bool act_tiles = false) {
  for (DType type : kPanelTypes) {
    const PanelGemmFn fn = fn_for(type);
    if (!fn) continue;
    uint32_t seed = 100;
    for (const Shape& s : shapes(type)) {
      const Problem p = make_problem(type, s.rows, s.cols, s.tokens, seed++);
      const std::vector<float> want = run(p, ref::panel_gemm);
      const std::vector<float> got = run(p, fn, act_tiles);
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(bits(got[i]), bits(want[i]))
            << name << " " << dtype_name(type) << " rows=" << p.rows << " cols=" << p.cols << " tokens=" << p.tokens
            << " at row " << i % static_cast<size_t>(p.rows) << " token " << i / static_cast<size_t>(p.rows) << ": "
            << got[i] << " vs scalar twin " << want[i];
      }
    }
  }
}

TEST(PanelGemm, SimdMatchesScalarTwinBitForBit) {
  bool ran = false;
  for (Isa isa : supported_isas()) {
    if (!panel_gemm(DType::Q4_0, isa)) continue;
    ran = true;
    expect_bit_identical([isa](DType t) { return panel_gemm(t, isa); }, isa_name(isa).data());
  }
  if (!ran) GTEST_SKIP() << "no SIMD panel kernel on this host";
}

// A token's row does not depend on the batch it is in: every format, through
// every kernel the host runs, gives a batch's rows the bits of one-token calls
// (the order of kernels/packed_gemm.h has no batch-size case). Batched decode
// and speculative verification rely on it.
TEST(PanelGemm, BatchRowsEqualOneTokenCallsBitForBit) {
  std::vector<std::pair<const char*, std::function<PanelGemmFn(DType)>>> kernels = {
      {"scalar twin", [](DType) { return PanelGemmFn{ref::panel_gemm}; }}};
  for (Isa isa : supported_isas())
    if (panel_gemm(DType::Q4_0, isa))
      kernels.emplace_back(isa_name(isa).data(), [isa](DType t) { return panel_gemm(t, isa); });
  for (const auto& [name, fn_for] : kernels)
    for (DType type : kPanelTypes) {
      uint32_t seed = 300;
      for (const Shape& s : shapes(type)) {
        if (s.tokens < 2) continue;
        const Problem p = make_problem(type, s.rows, s.cols, s.tokens, seed++);
        const std::vector<float> batch = run(p, fn_for(type));
        const std::vector<float> one = run(p, fn_for(type), false, /*one_token_calls=*/true);
        for (size_t i = 0; i < batch.size(); ++i)
          ASSERT_EQ(bits(batch[i]), bits(one[i]))
              << name << " " << dtype_name(type) << " rows=" << p.rows << " cols=" << p.cols << " tokens=" << p.tokens
              << " at row " << i % static_cast<size_t>(p.rows) << " token " << i / static_cast<size_t>(p.rows) << ": "
              << batch[i] << " in the batch, " << one[i] << " alone";
      }
    }
}

TEST(PanelGemm, AmxMatchesScalarTwinBitForBit) {
  if (!panel_gemm_amx(DType::Q4_0, Isa::Avx512)) GTEST_SKIP() << "AMX-INT8 not available";
  // The formats with a tile version (Q4_0, Q4_1, Q8_0, Q4_K); the rest have none.
  const auto amx_for = [](DType t) { return panel_gemm_amx(t, Isa::Avx512); };
  expect_bit_identical(amx_for, "amx");
  expect_bit_identical(amx_for, "amx (regrouped activation tiles)", /*act_tiles=*/true);
}

// The AVX2 kernel uses maddubs with |activation| <= 127 (its sign trick and
// int16 pair sums are exact only then): kestrel's Q8 quantizers, every Isa's,
// scale by 127 / amax. Patterns with a value of each sign at the maximum.
TEST(PanelGemm, ActivationQuantsStayWithin127) {
  for (Isa isa : supported_isas())
    for (DType at : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
      uint32_t seed = 9;
      for (Pattern pat : all_patterns()) {
        for (float sign : {1.0f, -1.0f}) {
          std::vector<float> x = make_row(pat, 512, seed++);
          for (float& v : x) v *= sign;
          const std::vector<uint8_t> q = quantize(at, x, isa);
          const int64_t block = traits(at).block_size;
          const size_t bb = traits(at).block_bytes;
          const size_t qs = at == DType::Q8_K   ? offsetof(BlockQ8K, qs)
                            : at == DType::Q8_1 ? offsetof(BlockQ8_1, qs)
                                                : offsetof(BlockQ8_0, qs);
          for (size_t b = 0; b < q.size() / bb; ++b)
            for (int64_t i = 0; i < block; ++i)
              ASSERT_NE(static_cast<int8_t>(q[b * bb + qs + static_cast<size_t>(i)]), -128)
                  << isa_name(isa) << " " << dtype_name(at) << " " << pattern_name(pat) << " sign " << sign
                  << " block " << b << " element " << i;
        }
      }
    }
}

TEST(PanelGemm, KernelPerIsa) {
  EXPECT_EQ(panel_gemm(DType::Q4_0, Isa::Scalar), nullptr);
  if (isa_supported(Isa::Avx2)) {
    for (DType t : kPanelTypes) EXPECT_NE(panel_gemm(t, Isa::Avx2), nullptr) << dtype_name(t);
  }
  EXPECT_EQ(panel_gemm_amx(DType::Q4_0, Isa::Avx2), nullptr);
  EXPECT_EQ(panel_gemm(DType::F16, Isa::Avx512), nullptr);
  // No tile version of the 5- and 6-bit planes: matmul keeps VNNI for them.
  for (DType t : {DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL,
                  DType::IQ4_XS})
    EXPECT_EQ(panel_gemm_amx(t, Isa::Avx512), nullptr);
}

TEST(PanelGemm, FormatsWithoutPanelsAreErrors) {
  EXPECT_EQ(panel_format(DType::F16), nullptr);
  std::vector<uint8_t> w(row_bytes(DType::F16, 32)), out(4096);
  EXPECT_THROW(pack_panels(DType::F16, w.data(), w.size(), 1, 32, 0, 1, out.data()), Error);
  std::vector<ActGroup> g(1);
  EXPECT_THROW(activation_groups(DType::F16, w.data(), 32, g.data()), Error);
}

// pack_panels writes every byte of a whole panel (it zeroes only the last,
// partial one): packing over two different fills gives the same bytes, and
// the missing rows of the partial panel read as zeros.
TEST(PanelGemm, PackingWritesEveryByteWhateverTheBufferHeld) {
  for (DType t : kPanelTypes) {
    SCOPED_TRACE(dtype_name(t));
    const PanelFormat& f = *panel_format(t);
    const int64_t rows = 37, cols = 512;
    std::vector<uint8_t> w;
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<uint8_t> q = random_blocks(t, cols, 900 + static_cast<uint32_t>(r));
      w.insert(w.end(), q.begin(), q.end());
    }
    std::vector<uint8_t> a(packed_matrix_bytes(f, rows, cols), 0x00), b(a.size(), 0xFF);
    pack_panels(t, w.data(), row_bytes(t, cols), rows, cols, 0, 3, a.data());
    pack_panels(t, w.data(), row_bytes(t, cols), rows, cols, 0, 3, b.data());
    EXPECT_EQ(a, b);
  }
}

TEST(PanelGemm, PackedSizeCountsWholePanels) {
  const PanelFormat& f = *panel_format(DType::Q4_0);
  // 16 rows x 32 elements: 16 nibble bytes + an F16 scale per row: the GGUF
  // block's 18 bytes per row.
  EXPECT_EQ(panel_bytes(f, 32), 16u * 18);
  EXPECT_EQ(packed_matrix_bytes(f, 17, 64), 2 * 2 * 16u * 18);
  // Q4_1: nibbles + F16 scale + F16 min = its 20 bytes; Q4_K: nibbles, int8
  // scale and min per 32 elements, F16 d and dmin per 256 (148 bytes per 256
  // elements and row, the file's 144).
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q4_1), 32), 16u * 20);
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q8_0), 32), 16u * 34);
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q4_K), 256), 8 * (16u * 16 + 32) + 64);
  static_assert((8 * (16 * 16 + 32) + 64) / 16 == 148);
  // The 5- and 6-bit formats hold exactly their GGUF bytes: Q5_0 22, Q5_1 24 per
  // 32 elements, Q6_K 210 per 256 (quants at 6 bits, int8 scales, F16 d).
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q5_0), 64), 2 * 16u * 22);
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q5_1), 32), 16u * 24);
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q6_K), 512), 2 * 16u * 210);
  // Q3_K: 4-bit quants, int8 scales, F16 d; Q2_K adds int8 mins and F16 dmin.
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q3_K), 256), 16 * (16u * 8 + 16) + 32);
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q2_K), 256), 16 * (16u * 8 + 32) + 64);
  // IQ4_NL as Q4_0; IQ4_XS: nibbles, int8 scales (its 6-bit ones widened),
  // F16 d per 256: 138 bytes per 256 elements and row, the GGUF's 136 + 2.
  EXPECT_EQ(panel_bytes(*panel_format(DType::IQ4_NL), 32), 16u * 18);
  EXPECT_EQ(panel_bytes(*panel_format(DType::IQ4_XS), 256), 16u * 138);
  // Q5_K: nibbles, fifth-bit plane, int8 scales and mins, F16 d and dmin: 180
  // bytes per 256 elements and row (the GGUF's 176 + 4).
  EXPECT_EQ(panel_bytes(*panel_format(DType::Q5_K), 256), 16u * 180);
}

// The tile configuration must reach the CPU whole (g++ 12's _tile_loadconfig
// pitfall); a dropped config faults or computes with the wrong shapes.
TEST(Amx, TileConfigAndDotProduct) {
  if (!amx::available()) GTEST_SKIP() << "AMX-INT8 not available";
  std::mt19937 rng(5);
  std::vector<int8_t> a(16 * 64);
  std::vector<uint8_t> b(16 * 64);
  for (auto& v : a) v = static_cast<int8_t>(rng());
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  std::vector<int32_t> c(16 * 16, 7);
  amx::tile_selftest(a.data(), b.data(), c.data());
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      int32_t want = 0;
      for (int k = 0; k < 64; ++k) want += a[static_cast<size_t>(m * 64 + k)] * b[static_cast<size_t>((k / 4) * 64 + n * 4 + k % 4)];
      ASSERT_EQ(c[static_cast<size_t>(m * 16 + n)], want) << "C[" << m << "][" << n << "]";
    }
}

}  // namespace
}  // namespace kestrel::kernels::test
