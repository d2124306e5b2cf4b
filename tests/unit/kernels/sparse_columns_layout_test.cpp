// TEAL's input-major layout (kernels/sparse_columns.h): read back element by
// element, it must give the dequantized GGUF weight, exactly up to the F16
// rounding of s and m for the formats kept as they are, and within int8
// rounding for the re-quantized ones.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "unit/kernels/sparse_columns_util.h"

namespace kestrel::kernels::test {
namespace {

constexpr double kHalfUlp = 1.0 / 2048;             // F16 rounding, relative: 2^-11
constexpr double kHalfSubnormal = 1.0 / (1 << 25);  // F16 rounding below its normal range, absolute
constexpr double kFloatUlp = 1.0 / (1 << 24);       // the float dequantizer's own rounding

struct Shape {
  int64_t rows, cols;
};

// SmolLM2's k/v projection (192 x 576; 512 inputs for the 256-wide formats),
// Qwen2.5-1.5B's gate/up (8960 x 1536), one partial chunk, one lone row.
std::vector<Shape> shapes(DType t) {
  const bool k256 = traits(t).block_size == 256;
  return {{192, k256 ? 512 : 576}, {8960, 1536}, {200, 256}, {1, 256}};
}

const std::vector<DType>& exact_formats() {
  static const std::vector<DType> v = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                       DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  return v;
}

const std::vector<DType>& requantized_formats() {
  static const std::vector<DType> v = {DType::F32,  DType::F16,    DType::BF16,  DType::Q2_K,
                                       DType::Q3_K, DType::IQ4_NL, DType::IQ4_XS};
  return v;
}

// Formats whose s and m are F16 values already (no rounding: bit-exact).
bool scales_are_half(DType t) {
  return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1 || t == DType::Q8_0;
}

TEST(SparseColumnsLayout, CodesAndGroupsPerFormat) {
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q4_K}) {
    EXPECT_EQ(column_layout(t, 10, 256).codes, ColumnCodes::Nibble) << dtype_name(t);
    EXPECT_EQ(column_layout(t, 10, 256).group, 32) << dtype_name(t);
  }
  for (DType t : {DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q5_K, DType::F32, DType::F16, DType::BF16, DType::Q2_K,
                  DType::Q3_K, DType::IQ4_NL, DType::IQ4_XS}) {
    EXPECT_EQ(column_layout(t, 10, 256).codes, ColumnCodes::Int8) << dtype_name(t);
    EXPECT_EQ(column_layout(t, 10, 256).group, 32) << dtype_name(t);
  }
  EXPECT_EQ(column_layout(DType::Q6_K, 10, 256).codes, ColumnCodes::Int8);
  EXPECT_EQ(column_layout(DType::Q6_K, 10, 256).group, 16);
}

TEST(SparseColumnsLayout, SizesCountWholeChunks) {
  const ColumnLayout l = column_layout(DType::Q4_K, 200, 512);  // 2 chunks, 16 groups
  EXPECT_EQ(l.chunks(), 2);
  EXPECT_EQ(l.groups(), 16);
  EXPECT_EQ(l.group_bytes(), 512u + 32u * 64u);
  EXPECT_EQ(l.bytes(), 2u * 16u * (512u + 32u * 64u));
  const ColumnLayout q6 = column_layout(DType::Q6_K, 128, 256);
  EXPECT_EQ(q6.bytes(), 16u * (512u + 16u * 128u));
  EXPECT_EQ(q6.bytes() % 64, 0u);
}

TEST(SparseColumnsLayout, RefusesOtherTypesAndRaggedShapes) {
  EXPECT_THROW(column_layout(DType::Q8_K, 4, 256), Error);
  EXPECT_THROW(column_layout(DType::I32, 4, 256), Error);
  EXPECT_THROW(column_layout(DType::F16, 4, 40), Error);    // not whole groups of 32
  EXPECT_THROW(column_layout(DType::Q4_K, 4, 288), Error);  // not whole blocks of 256
}

TEST(SparseColumnsLayout, ExactFormatsReconstructUpToHalfRounding) {
  for (DType t : exact_formats()) {
    for (const Shape& sh : shapes(t)) {
      const GgufWeight w = random_weight(t, sh.rows, sh.cols, 11);
      const Columns c(w, 3);
      const int code_max = c.layout.codes == ColumnCodes::Nibble ? 15
                           : t == DType::Q8_0                    ? 127
                           : t == DType::Q6_K                    ? 63
                                                                 : 31;
      const int code_min = t == DType::Q8_0 ? -128 : 0;
      for (int64_t r = 0; r < sh.rows; ++r) {
        const std::vector<float> want = dequantized_row(w, r);
        for (int64_t j = 0; j < sh.cols; ++j) {
          const double s = c.s(r, j), m = c.m(r, j);
          const int v = c.v(r, j);
          ASSERT_TRUE(v >= code_min && v <= code_max) << dtype_name(t) << " row " << r << " input " << j << ": v " << v;
          const float w_rj = want[static_cast<size_t>(j)];
          if (scales_are_half(t)) {
            // s and m held exactly: the float expression the dequantizer evaluates.
            const float got = static_cast<float>(s) * static_cast<float>(v) - static_cast<float>(m);
            ASSERT_EQ(got, w_rj) << dtype_name(t) << " " << sh.rows << "x" << sh.cols << " row " << r << " input " << j;
            continue;
          }
          const double err = std::fabs(s * v - m - w_rj);
          const double bound = kHalfUlp * (1 + kHalfUlp) * (std::fabs(s * v) + std::fabs(m)) +
                               kHalfSubnormal * (std::abs(v) + 1) + kFloatUlp * std::fabs(w_rj);
          ASSERT_LE(err, bound) << dtype_name(t) << " " << sh.rows << "x" << sh.cols << " row " << r << " input " << j
                                << ": s " << s << " v " << v << " m " << m << " want " << w_rj;
        }
      }
    }
  }
}

TEST(SparseColumnsLayout, OtherFormatsWithinInt8Rounding) {
  for (DType t : requantized_formats()) {
    for (const Shape& sh : shapes(t)) {
      if (sh.rows > 1000 && t != DType::F16) continue;  // the large shape once is enough here
      const GgufWeight w = random_weight(t, sh.rows, sh.cols, 12);
      const Columns c(w, 2);
      for (int64_t r = 0; r < sh.rows; ++r) {
        const std::vector<float> want = dequantized_row(w, r);
        for (int64_t j = 0; j < sh.cols; ++j) {
          const double s = c.s(r, j);
          const int v = c.v(r, j);
          ASSERT_EQ(c.m(r, j), 0.0f);
          ASSERT_TRUE(v >= -127 && v <= 127) << dtype_name(t) << " v " << v;
          // Rounded to the nearest multiple of s; s >= amax / 127, so no code is clamped.
          const double err = std::fabs(s * v - want[static_cast<size_t>(j)]);
          ASSERT_LE(err, 0.5 * s * (1 + 1e-6)) << dtype_name(t) << " row " << r << " input " << j << ": s " << s
                                               << " v " << v << " want " << want[static_cast<size_t>(j)];
        }
      }
    }
  }
}

TEST(SparseColumnsLayout, PaddingRowsAreZero) {
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::F16}) {
    const GgufWeight w = random_weight(t, 130, 256, 13);  // chunk 1 holds rows 128, 129 and 126 padding rows
    const Columns c(w);
    for (int64_t r = 130; r < 256; ++r)
      for (int64_t j = 0; j < 256; ++j) {
        ASSERT_EQ(c.s(r, j), 0.0f) << dtype_name(t) << " row " << r;
        ASSERT_EQ(c.m(r, j), 0.0f) << dtype_name(t) << " row " << r;
        ASSERT_EQ(c.v(r, j), 0) << dtype_name(t) << " row " << r;
      }
  }
}

// The row stride may exceed a row's bytes (a view into a wider tensor).
TEST(SparseColumnsLayout, HonoursRowStride) {
  const GgufWeight w = random_weight(DType::Q8_0, 64, 256, 14);
  GgufWeight wide = w;
  wide.row_stride = w.row_stride + 40;
  wide.data.assign(wide.row_stride * 64, 0xEE);
  for (int64_t r = 0; r < 64; ++r) std::memcpy(wide.data.data() + r * wide.row_stride, w.row(r), w.row_stride);
  const Columns a(w), b(wide);
  EXPECT_EQ(std::memcmp(a.data.get(), b.data.get(), a.layout.bytes()), 0);
}

TEST(SparseColumnsLayout, ScaleBeyondHalfRangeIsAnError) {
  // Q4_K: d = 65504 (F16 max) times a sub-block scale of 63 has no F16 form.
  GgufWeight w = random_weight(DType::Q4_K, 1, 256, 15);
  const uint16_t big = 0x7BFF;
  std::memcpy(w.data.data(), &big, 2);
  w.data[4] = 63;  // sub-block 0's scale
  EXPECT_THROW(Columns{w}, Error);
}

}  // namespace
}  // namespace kestrel::kernels::test
