// TEAL's sparse GEMV (kernels/sparse_columns.h) on every Isa the host runs:
// against a double-precision sum over the dequantized GGUF weight times the
// masked input, within a bound derived below; SIMD against the scalar twin bit
// for bit (they run the same operations per row); split chunk ranges; rows
// outside the range never written; empty groups never read.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "unit/kernels/sparse_columns_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // float rounding, relative
constexpr float kGuard = -12345.5f;
constexpr int64_t kPad = 16;  // guard floats on each side of y

SparseGemvFn gemv_for(const ColumnLayout& l, Isa isa) {
  const SparseColumnKernels& k = sparse_column_kernels(isa);
  return l.codes == ColumnCodes::Nibble ? k.gemv_nibble : k.gemv_int8;
}

// y [rows] between guards; out() is the first row.
struct Output {
  std::vector<float> buf;
  explicit Output(int64_t rows) : buf(static_cast<size_t>(rows + 2 * kPad), kGuard) {}
  float* out() { return buf.data() + kPad; }
  const float* out() const { return buf.data() + kPad; }
};

Output run(const Columns& c, const Kept& k, Isa isa, int64_t c0, int64_t c1) {
  Output y(c.layout.rows);
  gemv_for(c.layout, isa)(c.data.get(), c.layout, k.inputs(), c0, c1, y.out());
  return y;
}

// The reference and its error bound, row by row.
//  - The layout differs from the dequantized weight by e_rj = |s v - m - w_rj|
//    (bounded in sparse_columns_layout_test.cpp): at most sum_j |x_j| e_rj.
//  - The kernel's float arithmetic on the layout: each group's FMA chain of at
//    most `group` terms, the group sum's own float sum (as long), then two
//    roundings per group into y: at most (group + 2 groups + 8) u M with
//    M = sum_j |x_j| (|s v| + |m|) (first order in u).
struct Reference {
  std::vector<double> y, bound;
};

Reference reference(const GgufWeight& w, const Columns& c, const Kept& k) {
  Reference ref{std::vector<double>(static_cast<size_t>(w.rows)), std::vector<double>(static_cast<size_t>(w.rows))};
  const double n_eff = c.layout.group + 2.0 * static_cast<double>(c.layout.groups()) + 8;
  for (int64_t r = 0; r < w.rows; ++r) {
    const std::vector<float> wr = dequantized_row(w, r);
    double sum = 0, layout_err = 0, mag = 0;
    for (size_t i = 0; i < k.index.size(); ++i) {
      const int64_t j = k.index[i];
      const double x = k.value[i], s = c.s(r, j), m = c.m(r, j), v = c.v(r, j);
      sum += x * wr[static_cast<size_t>(j)];
      layout_err += std::fabs(x) * std::fabs(s * v - m - wr[static_cast<size_t>(j)]);
      mag += std::fabs(x) * (std::fabs(s * v) + std::fabs(m));
    }
    ref.y[static_cast<size_t>(r)] = sum;
    ref.bound[static_cast<size_t>(r)] = layout_err * (1 + 1e-6) + n_eff * kU * mag + 1e-30;
  }
  return ref;
}

struct Case {
  DType type;
  int64_t rows, cols;
  std::vector<double> densities;  // fractions of cols kept; 0 and one input always run
};

std::vector<Case> cases() {
  const std::vector<double> all = {0.1, 0.5, 1.0};
  std::vector<Case> out;
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K,
                  DType::Q6_K, DType::F16, DType::IQ4_XS}) {
    const bool k256 = traits(t).block_size == 256;
    out.push_back({t, 192, k256 ? 512 : 576, all});  // SmolLM2's k/v: 1.5 chunks
    out.push_back({t, 200, 256, all});
  }
  // Qwen2.5-1.5B's gate/up and down.
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0}) {
    out.push_back({t, 8960, 1536, {0.1, 1.0}});
    out.push_back({t, 1536, 8960, {0.1, 1.0}});
  }
  return out;
}

std::vector<int64_t> kept_counts(const Case& cs) {
  std::vector<int64_t> n = {0, 1};
  for (double d : cs.densities) n.push_back(static_cast<int64_t>(d * static_cast<double>(cs.cols)));
  return n;
}

TEST(SparseColumnsGemv, MatchesDoubleReferenceOnEveryIsa) {
  for (const Case& cs : cases()) {
    const GgufWeight w = random_weight(cs.type, cs.rows, cs.cols, 21);
    const Columns c(w);
    for (int64_t n : kept_counts(cs)) {
      const Kept k = random_kept(cs.cols, c.layout.group, n, static_cast<uint32_t>(100 + n));
      const Reference ref = reference(w, c, k);
      for (Isa isa : supported_isas()) {
        ASSERT_EQ(sparse_column_kernels(isa).isa, isa);
        const Output y = run(c, k, isa, 0, c.layout.chunks());
        for (int64_t r = 0; r < cs.rows; ++r) {
          const size_t i = static_cast<size_t>(r);
          ASSERT_LE(std::fabs(y.out()[i] - ref.y[i]), ref.bound[i])
              << dtype_name(cs.type) << " " << cs.rows << "x" << cs.cols << " kept " << n << " " << isa << " row " << r
              << ": " << y.out()[i] << " vs " << ref.y[i];
        }
        for (int64_t g = 0; g < kPad; ++g) {
          ASSERT_EQ(y.buf[static_cast<size_t>(g)], kGuard) << isa << " wrote before y";
          ASSERT_EQ(y.buf[static_cast<size_t>(kPad + cs.rows + g)], kGuard) << isa << " wrote past row " << cs.rows;
        }
      }
    }
  }
}

TEST(SparseColumnsGemv, SimdMatchesScalarTwinBitForBit) {
  if (simd_isas().empty()) GTEST_SKIP() << "no SIMD level on this CPU";
  for (const Case& cs : cases()) {
    const GgufWeight w = random_weight(cs.type, cs.rows, cs.cols, 22);
    const Columns c(w);
    for (int64_t n : kept_counts(cs)) {
      const Kept k = random_kept(cs.cols, c.layout.group, n, static_cast<uint32_t>(200 + n));
      const Output want = run(c, k, Isa::Scalar, 0, c.layout.chunks());
      for (Isa isa : simd_isas()) {
        const Output got = run(c, k, isa, 0, c.layout.chunks());
        for (int64_t r = 0; r < cs.rows; ++r)
          ASSERT_EQ(std::memcmp(&got.out()[r], &want.out()[r], 4), 0)
              << dtype_name(cs.type) << " " << cs.rows << "x" << cs.cols << " kept " << n << " " << isa << " row " << r
              << ": " << got.out()[r] << " vs " << want.out()[r];
      }
    }
  }
}

TEST(SparseColumnsGemv, SplitChunkRangesGiveTheSameBits) {
  for (DType t : {DType::Q4_K, DType::Q6_K}) {
    const GgufWeight w = random_weight(t, 600, 512, 23);  // 5 chunks, the last partial
    const Columns c(w);
    const Kept k = random_kept(512, c.layout.group, 200, 24);
    for (Isa isa : supported_isas()) {
      const Output whole = run(c, k, isa, 0, 5);
      Output split(600);
      const SparseGemvFn gemv = gemv_for(c.layout, isa);
      gemv(c.data.get(), c.layout, k.inputs(), 0, 2, split.out());
      gemv(c.data.get(), c.layout, k.inputs(), 2, 5, split.out());
      ASSERT_EQ(std::memcmp(whole.buf.data(), split.buf.data(), whole.buf.size() * 4), 0)
          << dtype_name(t) << " " << isa;
    }
  }
}

TEST(SparseColumnsGemv, WritesOnlyTheRowsOfItsChunks) {
  const GgufWeight w = random_weight(DType::Q4_0, 300, 256, 25);
  const Columns c(w);
  const Kept k = random_kept(256, 32, 100, 26);
  for (Isa isa : supported_isas()) {
    for (int64_t c0 = 0; c0 < 3; ++c0) {
      const Output y = run(c, k, isa, c0, c0 + 1);
      for (int64_t r = -kPad; r < 300 + kPad; ++r) {
        const bool mine = r >= c0 * 128 && r < std::min<int64_t>(300, (c0 + 1) * 128);
        const float v = y.buf[static_cast<size_t>(r + kPad)];
        if (mine)
          ASSERT_NE(v, kGuard) << isa << " chunk " << c0 << " row " << r << " not written";
        else
          ASSERT_EQ(v, kGuard) << isa << " chunk " << c0 << " wrote row " << r;
      }
    }
  }
}

// A group with no kept input is skipped whole: NaN scales there change nothing.
TEST(SparseColumnsGemv, EmptyGroupsAreNotRead) {
  for (DType t : {DType::Q4_K, DType::Q8_0}) {
    const GgufWeight w = random_weight(t, 256, 512, 27);
    const Columns c(w), poisoned(w);
    Kept k = random_kept(512, 32, 0, 28);
    // Inputs in groups 1, 2 and 9 only.
    k.index = {33, 40, 63, 64, 300};
    k.value = {0.5f, -1.25f, 2.0f, 0.75f, -0.125f};
    k.group_begin.assign(17, 0);
    for (int g = 0; g <= 16; ++g)
      for (int32_t j : k.index) k.group_begin[static_cast<size_t>(g)] += j < 32 * g;
    k.group_sum.assign(16, 0.0f);
    for (size_t i = 0; i < k.index.size(); ++i) k.group_sum[static_cast<size_t>(k.index[i] / 32)] += k.value[i];
    const uint16_t nan = 0x7E00;
    for (int64_t chunk = 0; chunk < 2; ++chunk)
      for (int64_t g : {0, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15}) {
        uint8_t* grp = poisoned.data.get() + chunk * c.layout.chunk_bytes() + g * c.layout.group_bytes();
        for (int64_t i = 0; i < 2 * kColumnChunkRows; ++i) std::memcpy(grp + 2 * i, &nan, 2);
      }
    for (Isa isa : supported_isas()) {
      const Output want = run(c, k, isa, 0, 2), got = run(poisoned, k, isa, 0, 2);
      ASSERT_EQ(std::memcmp(want.buf.data(), got.buf.data(), want.buf.size() * 4), 0) << dtype_name(t) << " " << isa;
    }
  }
}

TEST(SparseColumnsGemv, NoKeptInputGivesZeros) {
  const GgufWeight w = random_weight(DType::Q6_K, 130, 256, 29);
  const Columns c(w);
  const Kept k = random_kept(256, 16, 0, 30);
  for (Isa isa : supported_isas()) {
    const Output y = run(c, k, isa, 0, 2);
    for (int64_t r = 0; r < 130; ++r) ASSERT_EQ(y.out()[r], 0.0f) << isa << " row " << r;
  }
}

}  // namespace
}  // namespace kestrel::kernels::test
