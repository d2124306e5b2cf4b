// teal_act=a7 (kernels/sparse_columns.h InputPair): pair_inputs against the
// closed form of its codes and offsets; the paired GEMV against a
// double-precision product of the dequantized weight and the coded inputs
// (d * code), on every Isa the host runs; SIMD against the scalar twin bit for
// bit; the largest sums a group can reach (no int16 overflow); chunk ranges;
// layouts it cannot run refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "unit/kernels/sparse_columns_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kU = 1.0 / (1 << 24);
constexpr float kGuard = -12345.5f;

struct Paired {
  std::vector<InputPair> pair;
  std::vector<int32_t> group_begin;
  std::vector<float> scale, sum;
  PairedInputs inputs() const { return {pair.data(), group_begin.data(), scale.data(), sum.data()}; }
};

Paired pair_up(const ColumnLayout& l, const Kept& k) {
  Paired p;
  p.pair.resize(static_cast<size_t>(max_input_pairs(l)));
  p.group_begin.resize(static_cast<size_t>(l.groups()) + 1);
  p.scale.resize(static_cast<size_t>(l.groups()));
  p.sum.resize(static_cast<size_t>(l.groups()));
  pair_inputs(l, k.inputs(), p.pair.data(), p.group_begin.data(), p.scale.data(), p.sum.data());
  return p;
}

int code_a(const InputPair& p) { return static_cast<int8_t>(p.codes & 0xFF); }
int code_b(const InputPair& p) { return static_cast<int8_t>(p.codes >> 8); }

// The input whose column starts `offset` bytes into a chunk.
int64_t input_at(const ColumnLayout& l, uint32_t offset) {
  const int64_t g = offset / static_cast<int64_t>(l.group_bytes());
  const int64_t within = offset - g * static_cast<int64_t>(l.group_bytes()) - static_cast<int64_t>(l.scale_bytes());
  return g * l.group + within / static_cast<int64_t>(l.column_bytes());
}

// The coded input: d * code for each kept input, 0 elsewhere.
std::vector<double> coded_input(const ColumnLayout& l, const Paired& p) {
  std::vector<double> x(static_cast<size_t>(l.cols), 0.0);
  for (int64_t g = 0; g < l.groups(); ++g)
    for (int32_t i = p.group_begin[static_cast<size_t>(g)]; i < p.group_begin[static_cast<size_t>(g) + 1]; ++i) {
      const InputPair& pr = p.pair[static_cast<size_t>(i)];
      const double d = p.scale[static_cast<size_t>(g)];
      x[static_cast<size_t>(input_at(l, pr.a))] = d * code_a(pr);
      if (pr.b != pr.a) x[static_cast<size_t>(input_at(l, pr.b))] = d * code_b(pr);
    }
  return x;
}

std::vector<float> run(const Columns& c, const Paired& p, Isa isa, int64_t c0, int64_t c1) {
  std::vector<float> y(static_cast<size_t>(c.layout.rows), kGuard);
  sparse_column_kernels(isa).gemv_nibble_pairs(c.data.get(), c.layout, p.inputs(), c0, c1, y.data());
  return y;
}

TEST(SparseColumnsPairs, CodesEachGroupsKeptInputsInSevenBits) {
  const ColumnLayout l = column_layout(DType::Q4_K, 256, 512);
  for (int64_t n : {0, 1, 7, 255, 512}) {
    const Kept k = random_kept(512, l.group, n, static_cast<uint32_t>(40 + n));
    const Paired p = pair_up(l, k);
    ASSERT_EQ(p.group_begin[0], 0);
    for (int64_t g = 0; g < l.groups(); ++g) {
      const auto gs = static_cast<size_t>(g);
      const int32_t kb = k.group_begin[gs], ke = k.group_begin[gs + 1];
      float amax = 0.0f;
      for (int32_t i = kb; i < ke; ++i) amax = std::max(amax, std::fabs(k.value[static_cast<size_t>(i)]));
      ASSERT_EQ(p.scale[gs], amax / 63) << "group " << g;
      // ceil(kept / 2) pairs, in the kept inputs' order.
      ASSERT_EQ(p.group_begin[gs + 1] - p.group_begin[gs], (ke - kb + 1) / 2) << "group " << g;
      int code_sum = 0;
      for (int32_t i = kb; i < ke; ++i) {
        const InputPair& pr = p.pair[static_cast<size_t>(p.group_begin[gs] + (i - kb) / 2)];
        ASSERT_EQ(pr.group, g);
        const bool first = (i - kb) % 2 == 0;
        const uint32_t offset = first ? pr.a : pr.b;
        const int code = first ? code_a(pr) : code_b(pr);
        const int64_t j = k.index[static_cast<size_t>(i)];
        ASSERT_EQ(offset, g * l.group_bytes() + l.scale_bytes() + static_cast<size_t>(j - g * l.group) * 64);
        const float x = k.value[static_cast<size_t>(i)];
        ASSERT_EQ(code, std::lrint(x * (63 / amax))) << "input " << j;
        ASSERT_LE(std::abs(code), 63);
        code_sum += code;
      }
      if ((ke - kb) % 2 == 1) {  // the lone last input: its own column twice, code 0
        const InputPair& last = p.pair[static_cast<size_t>(p.group_begin[gs + 1] - 1)];
        ASSERT_EQ(last.b, last.a);
        ASSERT_EQ(code_b(last), 0);
      }
      ASSERT_EQ(p.sum[gs], p.scale[gs] * static_cast<float>(code_sum)) << "group " << g;
    }
    ASSERT_EQ(p.group_begin[static_cast<size_t>(l.groups())], (n == 0 ? 0 : p.group_begin.back()));
  }
}

// y against sum_j (d code_j) W[r][j] in double: the layout's rounding of the
// scales (as in sparse_columns_gemv_test.cpp), then per group the rounding of
// s * d, one FMA into y and the offset term's: (3 groups + 8) u M.
TEST(SparseColumnsPairs, MatchesDoubleReferenceOfTheCodedInputsOnEveryIsa) {
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q4_K}) {
    const bool k256 = traits(t).block_size == 256;
    for (int64_t rows : {200, 8960}) {
      const int64_t cols = rows == 8960 ? 1536 : (k256 ? 512 : 576);
      const GgufWeight w = random_weight(t, rows, cols, 51);
      const Columns c(w);
      for (int64_t n : {int64_t{0}, int64_t{1}, cols / 10, cols / 2 + 1, cols}) {
        const Kept k = random_kept(cols, c.layout.group, n, static_cast<uint32_t>(60 + n));
        const Paired p = pair_up(c.layout, k);
        const std::vector<double> x = coded_input(c.layout, p);
        const double n_eff = 3.0 * static_cast<double>(c.layout.groups()) + 8;
        for (Isa isa : supported_isas()) {
          const std::vector<float> y = run(c, p, isa, 0, c.layout.chunks());
          for (int64_t r = 0; r < rows; r += rows > 1000 ? 7 : 1) {
            const std::vector<float> wr = dequantized_row(w, r);
            double want = 0, layout_err = 0, mag = 0;
            for (int64_t j = 0; j < cols; ++j) {
              const double xj = x[static_cast<size_t>(j)];
              if (xj == 0.0) continue;
              const double s = c.s(r, j), m = c.m(r, j), v = c.v(r, j);
              want += xj * wr[static_cast<size_t>(j)];
              layout_err += std::fabs(xj) * std::fabs(s * v - m - wr[static_cast<size_t>(j)]);
              mag += std::fabs(xj) * (std::fabs(s * v) + std::fabs(m));
            }
            const double bound = layout_err * (1 + 1e-6) + n_eff * kU * mag + 1e-30;
            ASSERT_LE(std::fabs(y[static_cast<size_t>(r)] - want), bound)
                << dtype_name(t) << " " << rows << "x" << cols << " kept " << n << " " << isa << " row " << r << ": "
                << y[static_cast<size_t>(r)] << " vs " << want;
          }
        }
      }
    }
  }
}

TEST(SparseColumnsPairs, SimdMatchesScalarTwinBitForBit) {
  if (simd_isas().empty()) GTEST_SKIP() << "no SIMD level on this CPU";
  for (DType t : {DType::Q4_0, DType::Q4_K}) {
    const GgufWeight w = random_weight(t, 1536, 2048, 52);
    const Columns c(w);
    for (int64_t n : {1, 3, 100, 1023, 2048}) {
      const Kept k = random_kept(2048, c.layout.group, n, static_cast<uint32_t>(70 + n));
      const Paired p = pair_up(c.layout, k);
      const std::vector<float> want = run(c, p, Isa::Scalar, 0, c.layout.chunks());
      for (Isa isa : simd_isas()) {
        const std::vector<float> got = run(c, p, isa, 0, c.layout.chunks());
        ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0)
            << dtype_name(t) << " kept " << n << " " << isa;
      }
    }
  }
}

// Every code 15 and every input at the group's maximum: each group's 16 pairs
// sum to 16 * 2 * 15 * 63 = 30240 per row, the most a group can reach (an
// int16 holds 32767); the signs flipped, -30240.
TEST(SparseColumnsPairs, TheLargestGroupSumsDoNotOverflow) {
  const int64_t rows = 128, cols = 256;
  GgufWeight w{DType::Q4_0, rows, cols, row_bytes(DType::Q4_0, cols), {}};
  w.data.resize(w.row_stride * rows);
  for (size_t b = 0; b < w.data.size(); b += 18) {  // d = 1, every nibble 15 (code 15 - 8 = 7)
    const uint16_t one = f32_to_fp16(1.0f);
    std::memcpy(&w.data[b], &one, 2);
    std::memset(&w.data[b + 2], 0xFF, 16);
  }
  const Columns c(w);
  for (float sign : {1.0f, -1.0f}) {
    Kept k = random_kept(cols, 32, cols, 80);
    for (float& v : k.value) v = sign * 63.0f / 64.0f;  // d = 1/64 and every code +-63, all exact
    const Paired p = pair_up(c.layout, k);
    for (const InputPair& pr : p.pair) ASSERT_EQ(code_a(pr), sign > 0 ? 63 : -63);
    for (Isa isa : supported_isas()) {
      const std::vector<float> y = run(c, p, isa, 0, 1);
      // W = 7 everywhere, x = +-63/64 over 256 inputs: y = +-1764, every step exact.
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_EQ(y[static_cast<size_t>(r)], sign * 1764.0f) << isa << " row " << r;
    }
  }
}

TEST(SparseColumnsPairs, SplitChunkRangesGiveTheSameBitsAndWriteOnlyTheirRows) {
  const GgufWeight w = random_weight(DType::Q4_K, 600, 512, 53);  // 5 chunks, the last partial
  const Columns c(w);
  const Paired p = pair_up(c.layout, random_kept(512, 32, 201, 54));
  for (Isa isa : supported_isas()) {
    const std::vector<float> whole = run(c, p, isa, 0, 5);
    std::vector<float> split = run(c, p, isa, 0, 2);
    for (int64_t r = 256; r < 600; ++r) ASSERT_EQ(split[static_cast<size_t>(r)], kGuard) << isa << " row " << r;
    sparse_column_kernels(isa).gemv_nibble_pairs(c.data.get(), c.layout, p.inputs(), 2, 5, split.data());
    ASSERT_EQ(std::memcmp(whole.data(), split.data(), whole.size() * 4), 0) << isa;
  }
}

TEST(SparseColumnsPairs, RefusesLayoutsWithoutFourBitColumns) {
  for (DType t : {DType::Q8_0, DType::Q6_K, DType::F16}) {
    const ColumnLayout l = column_layout(t, 128, 256);
    const Kept k = random_kept(256, l.group, 10, 55);
    EXPECT_THROW(pair_up(l, k), Error) << dtype_name(t);
  }
}

}  // namespace
}  // namespace kestrel::kernels::test
