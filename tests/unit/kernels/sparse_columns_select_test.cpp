// TEAL's input selection (kernels/sparse_columns.h select): on every Isa the
// host runs, exactly the entries a brute-force filter keeps, in order.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/sparse_columns.h"
#include "kernels/sparse_columns_isa.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

struct Selected {
  std::vector<int32_t> index;
  std::vector<float> value;
};

Selected brute_force(const std::vector<float>& x, float threshold) {
  Selected s;
  for (size_t j = 0; j < x.size(); ++j)
    if (std::fabs(x[j]) > threshold) {
      s.index.push_back(static_cast<int32_t>(j));
      s.value.push_back(x[j]);
    }
  return s;
}

void expect_selects(const std::vector<float>& x, float threshold, const std::string& what) {
  const Selected want = brute_force(x, threshold);
  const auto n = static_cast<int64_t>(x.size());
  for (Isa isa : supported_isas()) {
    // Exactly n entries: a kernel may use all of them, never more.
    std::vector<int32_t> index(x.size());
    std::vector<float> value(x.size());
    const int64_t kept = sparse_column_kernels(isa).select(x.data(), n, threshold, index.data(), value.data());
    ASSERT_EQ(kept, static_cast<int64_t>(want.index.size())) << what << " " << isa << " n=" << n;
    for (int64_t i = 0; i < kept; ++i) {
      ASSERT_EQ(index[static_cast<size_t>(i)], want.index[static_cast<size_t>(i)]) << what << " " << isa << " #" << i;
      ASSERT_EQ(std::memcmp(&value[static_cast<size_t>(i)], &want.value[static_cast<size_t>(i)], 4), 0)
          << what << " " << isa << " #" << i;
    }
  }
}

TEST(SparseColumnsSelect, MatchesBruteForceAtEveryLengthAndThreshold) {
  for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1536, 8960, 8963}) {
    const std::vector<float> x = make_row(Pattern::Normal, n, static_cast<uint32_t>(n));
    for (float t : {0.0f, 0.1f, 0.675f, 1.5f, 10.0f}) expect_selects(x, t, "normal t=" + std::to_string(t));
  }
}

TEST(SparseColumnsSelect, AllKeptNoneKept) {
  for (int64_t n : {5, 16, 37, 1000}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = (i % 2 ? -1.0f : 1.0f) * (2.0f + static_cast<float>(i));
    expect_selects(x, 1.0f, "all kept");
    expect_selects(x, 1e9f, "none kept");
  }
}

// Threshold 0 keeps every nonzero, negative zero included as zero; values
// equal to the threshold are dropped (strictly greater is kept); NaN never.
TEST(SparseColumnsSelect, ZerosTiesAndNaN) {
  std::vector<float> x;
  for (int i = 0; i < 53; ++i) {
    const float v[] = {0.0f,
                       -0.0f,
                       0.5f,
                       -0.5f,
                       1e-30f,
                       -1e-40f,
                       std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity(),
                       0.25f};
    x.push_back(v[(i * 7) % 10]);
  }
  expect_selects(x, 0.0f, "threshold 0");
  expect_selects(x, 0.5f, "threshold at a value");
  expect_selects(x, 0.25f, "threshold 0.25");
}

TEST(SparseColumnsSelect, KernelPerIsa) {
  for (Isa isa : supported_isas()) EXPECT_EQ(sparse_column_kernels(isa).isa, isa);
  const SparseColumnKernels& scalar = sparse_column_kernels(Isa::Scalar);
  EXPECT_EQ(scalar.select, &ref::select_inputs);
  EXPECT_EQ(scalar.gemv_nibble, &ref::sparse_gemv_nibble);
  EXPECT_EQ(scalar.gemv_int8, &ref::sparse_gemv_int8);
}

}  // namespace
}  // namespace kestrel::kernels::test
