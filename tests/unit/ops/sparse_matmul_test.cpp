// matmul_sparse_input (ops/sparse_matmul.h): the one-token sparse path (the
// input-major copy, F32 activations) against a double-precision product of
// the dequantized weight and the masked input; the dense fallback (a denser
// input, or several tokens) against plain matmul of the masked input, bit for
// bit; rows the sparsity does not apply to untouched; the skipped-weight count.
#include "ops/sparse_matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/quant_kernels.h"
#include "kernels/sparse_columns.h"
#include "platform/cpu.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

struct Case {
  std::vector<uint8_t> data;
  Weight w;
};

Case make_case(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  Case c;
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const auto& k = kernels::quant_kernels(type, Isa::Scalar);
  const size_t stride = row_bytes(type, cols);
  c.data.resize(stride * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = g(rng);
    k.quantize_weights(row.data(), c.data.data() + static_cast<size_t>(r) * stride, cols);
  }
  c.w.name = "w";
  c.w.type = type;
  c.w.rows = rows;
  c.w.cols = cols;
  c.w.data = c.data.data();
  c.w.row_stride = stride;
  return c;
}

std::vector<float> input(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = g(rng);
  return x;
}

// The median |x|: a threshold that drops about half the inputs.
float median_abs(std::vector<float> x) {
  for (auto& v : x) v = std::fabs(v);
  std::nth_element(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(x.size() / 2), x.end());
  return x[x.size() / 2];
}

class SparseMatmul : public ::testing::TestWithParam<DType> {};

TEST_P(SparseMatmul, OneTokenReadsColumnsOfKeptInputs) {
  const DType type = GetParam();
  // 200 rows: a chunk and a partial one (rows past 200 are padding).
  const Case c = make_case(type, 200, 512, 7);
  const std::vector<float> x = input(512, 8);
  const float t = median_abs(x);
  std::vector<float> bias(200);
  for (size_t r = 0; r < bias.size(); ++r) bias[r] = 0.01f * static_cast<float>(r);
  ThreadPool pool(2);
  Workspace ws;
  SparseScratch scratch;
  std::vector<float> wrow(512);
  const auto& deq = kernels::quant_kernels(type, Isa::Scalar);
  for (Isa isa : supported_isas()) {
    SparsityCounter counter;
    const MatmulContext mm{pool, ws, isa};
    std::vector<float> y(200, -1.0f);
    matmul_sparse_input(mm, c.w, bias.data(), x.data(), 1, y.data(), SparseInput{t, nullptr, 1.0, &counter}, scratch);
    int64_t kept = 0;
    for (float v : x) kept += std::fabs(v) > t;
    EXPECT_EQ(counter.total.load(), uint64_t{512} * 200);
    EXPECT_EQ(counter.skipped.load(), static_cast<uint64_t>(512 - kept) * 200);
    for (int64_t r = 0; r < 200; ++r) {
      deq.dequantize_row(c.w.row(r), wrow.data(), 512);
      double want = bias[static_cast<size_t>(r)], mag = 0.0;
      for (int64_t j = 0; j < 512; ++j) {
        if (std::fabs(x[static_cast<size_t>(j)]) <= t) continue;
        want += double{wrow[static_cast<size_t>(j)]} * x[static_cast<size_t>(j)];
        mag += std::fabs(double{wrow[static_cast<size_t>(j)]} * x[static_cast<size_t>(j)]);
      }
      // F16 scales (2^-11 relative) and F32 accumulation over 512 terms; F16
      // weights are re-quantized to int8 codes (half a step of amax / 127).
      const double bound = type == DType::F16 ? 4e-3 : 1e-3;
      EXPECT_NEAR(y[static_cast<size_t>(r)], want, bound * mag + 1e-5)
          << dtype_name(type) << " " << isa_name(isa) << " row " << r;
    }
  }
}

TEST_P(SparseMatmul, DenserInputsAndBatchesTakeTheDenseKernelsOnTheMaskedInput) {
  const DType type = GetParam();
  const Case c = make_case(type, 64, 256, 11);
  const std::vector<float> x = input(3 * 256, 12);
  const float t = median_abs(x);
  std::vector<float> masked = x;
  // Rows 0 and 2 are decode rows; row 1 (a prompt's) keeps every input.
  const uint8_t rows[3] = {1, 0, 1};
  for (int64_t t_row : {0, 2})
    for (int64_t j = 0; j < 256; ++j) {
      float& v = masked[static_cast<size_t>(t_row * 256 + j)];
      if (std::fabs(v) <= t) v = 0.0f;
    }
  ThreadPool pool(2);
  Workspace ws;
  SparseScratch scratch;
  const MatmulContext mm{pool, ws, best_isa()};
  std::vector<float> want(3 * 64), got(3 * 64);
  matmul(mm, c.w, masked.data(), 3, want.data());
  matmul_sparse_input(mm, c.w, nullptr, x.data(), 3, got.data(), SparseInput{t, rows}, scratch);
  EXPECT_EQ(got, want);
  // One token above max_density: the dense kernel on the masked row.
  matmul(mm, c.w, masked.data(), 1, want.data());
  matmul_sparse_input(mm, c.w, nullptr, x.data(), 1, got.data(), SparseInput{t, nullptr, 0.1}, scratch);
  EXPECT_TRUE(std::equal(want.begin(), want.begin() + 64, got.begin()));
  // A row the sparsity does not apply to is plain matmul.
  const uint8_t none[1] = {0};
  matmul(mm, c.w, x.data(), 1, want.data());
  matmul_sparse_input(mm, c.w, nullptr, x.data(), 1, got.data(), SparseInput{t, none}, scratch);
  EXPECT_TRUE(std::equal(want.begin(), want.begin() + 64, got.begin()));
}

// teal_act=a7: 4-bit weights take the kept inputs as 7-bit codes per group
// of 32 (error at most half a step, max |x| / 126, per input); other formats
// ignore it and give the F32 path's bits.
TEST_P(SparseMatmul, PairedInputsCodeFourBitWeightsOnly) {
  const DType type = GetParam();
  const Case c = make_case(type, 200, 512, 13);
  const std::vector<float> x = input(512, 14);
  const float t = median_abs(x);
  ThreadPool pool(2);
  Workspace ws;
  SparseScratch scratch;
  std::vector<float> wrow(512);
  const auto& deq = kernels::quant_kernels(type, Isa::Scalar);
  const bool nibble = kernels::column_layout(type, 200, 512).codes == kernels::ColumnCodes::Nibble;
  // Half a code step per group: max |x| of the group's kept inputs / 126.
  std::vector<double> half_step(16, 0.0);
  for (int64_t j = 0; j < 512; ++j)
    if (std::fabs(x[static_cast<size_t>(j)]) > t)
      half_step[static_cast<size_t>(j / 32)] =
          std::max(half_step[static_cast<size_t>(j / 32)], std::fabs(double{x[static_cast<size_t>(j)]}) / 126);
  for (Isa isa : supported_isas()) {
    const MatmulContext mm{pool, ws, isa};
    std::vector<float> f32(200), a7(200);
    matmul_sparse_input(mm, c.w, nullptr, x.data(), 1, f32.data(), SparseInput{t, nullptr, 1.0}, scratch);
    SparseInput paired{t, nullptr, 1.0};
    paired.paired = true;
    matmul_sparse_input(mm, c.w, nullptr, x.data(), 1, a7.data(), paired, scratch);
    if (!nibble) {
      EXPECT_EQ(a7, f32) << dtype_name(type) << " " << isa_name(isa) << ": paired codes reached a non-4-bit weight";
      continue;
    }
    EXPECT_NE(a7, f32) << dtype_name(type) << " " << isa_name(isa) << ": the inputs were not coded";
    for (int64_t r = 0; r < 200; ++r) {
      deq.dequantize_row(c.w.row(r), wrow.data(), 512);
      double want = 0.0, coding = 0.0, mag = 0.0;
      for (int64_t j = 0; j < 512; ++j) {
        if (std::fabs(x[static_cast<size_t>(j)]) <= t) continue;
        const double w = wrow[static_cast<size_t>(j)];
        want += w * x[static_cast<size_t>(j)];
        coding += std::fabs(w) * half_step[static_cast<size_t>(j / 32)];
        mag += std::fabs(w * x[static_cast<size_t>(j)]);
      }
      EXPECT_NEAR(a7[static_cast<size_t>(r)], want, coding * (1 + 1e-3) + 1e-3 * mag + 1e-5)
          << dtype_name(type) << " " << isa_name(isa) << " row " << r;
    }
  }
}

// rows_as_steps (perplexity scoring a7): each applying row of a batch gives
// the bits of the same row decoded alone; the others plain matmul's.
TEST_P(SparseMatmul, RowsAsStepsGiveEachRowsDecodeStepBits) {
  const DType type = GetParam();
  const Case c = make_case(type, 200, 512, 15);
  const std::vector<float> x = input(3 * 512, 16);
  const float t = median_abs(x);
  const uint8_t rows[3] = {1, 0, 1};
  ThreadPool pool(2);
  Workspace ws;
  SparseScratch scratch;
  const MatmulContext mm{pool, ws, best_isa()};
  SparseInput step{t, nullptr, 0.55};  // the denser rows take the dense kernels, as a step would
  step.paired = true;
  SparseInput batch = step;
  batch.rows = rows;
  batch.rows_as_steps = true;
  std::vector<float> got(3 * 200), want(200);
  matmul_sparse_input(mm, c.w, nullptr, x.data(), 3, got.data(), batch, scratch);
  for (int64_t r = 0; r < 3; ++r) {
    if (rows[r])
      matmul_sparse_input(mm, c.w, nullptr, x.data() + r * 512, 1, want.data(), step, scratch);
    else
      matmul(mm, c.w, x.data() + r * 512, 1, want.data());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * 200)) << dtype_name(type) << " row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, SparseMatmul,
                         ::testing::Values(DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K,
                                           DType::Q6_K, DType::F16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace kestrel
