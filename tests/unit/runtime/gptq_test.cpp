// GPTQ (runtime/gptq.h) against independent references on small shapes:
//  - the textbook algorithm (Frantar et al.: errors fed forward through the
//    upper Cholesky factor of H⁻¹), written here in double precision with an
//    explicit inverse, gives the same rounded weights as the inverse-free form;
//  - with uncorrelated inputs (H diagonal) nothing is fed forward: every
//    weight is the nearest value of its block's grid, found by brute force
//    over every code, for each of the five formats; the encoded bytes decode
//    (the format's own dequantizer) to the weights returned;
//  - with correlated inputs the output error |(Ŵ - W) X|² is well below
//    plain rounding's (the format's own quantizer);
//  - the weighted scale search (llama.cpp's imatrix rule) lowers every block's
//    weighted error against the format's max-based scale; H's diagonal alone
//    gives the full factor's diagonal when H is diagonal;
//  - the first row's weight (the attention sink's) counts it that many times;
//  - bad input is refused.
#include "runtime/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/quant_kernels.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

constexpr int kBlock = 32;

// Inputs whose channels are mixed (correlated): x = z A, z standard normal.
std::vector<float> correlated_inputs(int64_t n, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> a(static_cast<size_t>(cols * cols)), z(static_cast<size_t>(n * cols)), x(z.size(), 0.0f);
  for (float& v : a) v = normal(rng) / std::sqrt(static_cast<float>(cols));
  for (int64_t j = 0; j < cols; ++j) a[static_cast<size_t>(j * cols + j)] += 1.0f;
  for (float& v : z) v = normal(rng);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j)
        x[static_cast<size_t>(t * cols + j)] +=
            z[static_cast<size_t>(t * cols + i)] * a[static_cast<size_t>(i * cols + j)];
  return x;
}

std::vector<float> random_weights(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = normal(rng);
  return w;
}

// Q4_0's grid of a block, as the format stores it: d = signed absmax / -8 in F16.
struct Q4Grid {
  float d;
  float value(int q) const { return d * static_cast<float>(q - 8); }
};
Q4Grid q4_grid(const double* x) {
  double amax = 0.0, max = 0.0;
  for (int j = 0; j < kBlock; ++j)
    if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
  return {fp16_to_f32(f32_to_fp16(static_cast<float>(max / -8.0)))};
}
float nearest_q4(const Q4Grid& g, double x) {
  float best = g.value(0);
  for (int q = 1; q < 16; ++q)
    if (std::fabs(g.value(q) - x) < std::fabs(best - x)) best = g.value(q);
  return best;
}

// Textbook GPTQ in double: U = upper Cholesky factor of (H + μ diag(H) + λI)⁻¹, columns in
// order, each column's error / U_jj times U_j,k subtracted from the later columns.
std::vector<float> textbook_gptq_q4_0(std::vector<double> w, int64_t rows, int64_t cols, const std::vector<float>& x,
                                      int64_t n, double damp, double diagonal_damp) {
  std::vector<double> h(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j)
        h[static_cast<size_t>(i * cols + j)] +=
            double{x[static_cast<size_t>(t * cols + i)]} * x[static_cast<size_t>(t * cols + j)];
  double mean = 0.0;
  for (int64_t i = 0; i < cols; ++i) mean += h[static_cast<size_t>(i * cols + i)] / static_cast<double>(cols);
  for (int64_t i = 0; i < cols; ++i)
    h[static_cast<size_t>(i * cols + i)] = h[static_cast<size_t>(i * cols + i)] * (1.0 + diagonal_damp) + damp * mean;
  // Gauss-Jordan inverse.
  std::vector<double> inv(h.size(), 0.0);
  for (int64_t i = 0; i < cols; ++i) inv[static_cast<size_t>(i * cols + i)] = 1.0;
  for (int64_t p = 0; p < cols; ++p) {
    const double pivot = h[static_cast<size_t>(p * cols + p)];
    for (int64_t j = 0; j < cols; ++j) {
      h[static_cast<size_t>(p * cols + j)] /= pivot;
      inv[static_cast<size_t>(p * cols + j)] /= pivot;
    }
    for (int64_t i = 0; i < cols; ++i) {
      if (i == p) continue;
      const double f = h[static_cast<size_t>(i * cols + p)];
      for (int64_t j = 0; j < cols; ++j) {
        h[static_cast<size_t>(i * cols + j)] -= f * h[static_cast<size_t>(p * cols + j)];
        inv[static_cast<size_t>(i * cols + j)] -= f * inv[static_cast<size_t>(p * cols + j)];
      }
    }
  }
  // Upper Cholesky factor: inv = Uᵀ U.
  std::vector<double> u(h.size(), 0.0);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = i; j < cols; ++j) {
      double s = inv[static_cast<size_t>(i * cols + j)];
      for (int64_t k = 0; k < i; ++k) s -= u[static_cast<size_t>(k * cols + i)] * u[static_cast<size_t>(k * cols + j)];
      u[static_cast<size_t>(i * cols + j)] = i == j ? std::sqrt(s) : s / u[static_cast<size_t>(i * cols + i)];
    }
  std::vector<float> out(w.size());
  for (int64_t r = 0; r < rows; ++r) {
    double* row = w.data() + r * cols;
    Q4Grid g{0.0f};
    for (int64_t k = 0; k < cols; ++k) {
      if (k % kBlock == 0) g = q4_grid(row + k);
      const float q = nearest_q4(g, row[k]);
      out[static_cast<size_t>(r * cols + k)] = q;
      const double e = (row[k] - q) / u[static_cast<size_t>(k * cols + k)];
      for (int64_t j = k + 1; j < cols; ++j) row[j] -= e * u[static_cast<size_t>(k * cols + j)];
    }
  }
  return out;
}

double output_error(const std::vector<float>& a, const std::vector<float>& b, int64_t rows, int64_t cols,
                    const std::vector<float>& x, int64_t n) {
  double e = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < n; ++t) {
      double d = 0.0;
      for (int64_t j = 0; j < cols; ++j)
        d += (double{a[static_cast<size_t>(r * cols + j)]} - b[static_cast<size_t>(r * cols + j)]) *
             x[static_cast<size_t>(t * cols + j)];
      e += d * d;
    }
  return e;
}

TEST(Gptq, MatchesTheTextbookAlgorithmWithItsInverse) {
  const int64_t rows = 6, cols = 160, n = 400;  // 160 columns: a batch of 128 and a partial one
  const std::vector<float> x = correlated_inputs(n, cols, 3), w = random_weights(rows, cols, 4);
  ThreadPool pool(2);
  GptqOptions o;
  o.sink_weight = 1.0;     // the textbook's H: every row once
  o.scale_search = false;  // and its scales: the format's rule
  for (double diagonal_damp : {0.0, 0.3, 1.0}) {
    o.diagonal_damp = diagonal_damp;
    const std::vector<float> v = gptq_factor(x.data(), n, cols, o, pool);
    std::vector<float> ours = w;
    gptq_quantize(ours.data(), rows, cols, DType::Q4_0, v, o, pool);
    const std::vector<float> ref =
        textbook_gptq_q4_0(std::vector<double>(w.begin(), w.end()), rows, cols, x, n, o.damp, diagonal_damp);
    int64_t same = 0;
    for (size_t i = 0; i < ref.size(); ++i) same += ours[i] == ref[i];
    // Float against double: a weight within rounding of a grid midpoint may go
    // the other way and steer the rest of its row; anything systematic differs in most.
    EXPECT_GE(same, static_cast<int64_t>(ref.size()) * 97 / 100)
        << same << " of " << ref.size() << ", diagonal damping " << diagonal_damp;
  }
}

TEST(Gptq, ALargeDiagonalDampingLeavesTheWeightedScaleSearchAlone) {
  const int64_t rows = 8, cols = 96, n = 300;
  const std::vector<float> x = correlated_inputs(n, cols, 7), w = random_weights(rows, cols, 8);
  ThreadPool pool(2);
  GptqOptions o;
  o.sink_weight = 1.0;
  o.diagonal = true;  // no error fed forward: each block's searched scale, nearest codes
  std::vector<float> alone = w;
  gptq_quantize(alone.data(), rows, cols, DType::Q4_0, gptq_factor(x.data(), n, cols, o, pool), o, pool);
  o.diagonal = false;
  const auto rounded = [&](double diagonal_damp) {
    o.diagonal_damp = diagonal_damp;
    std::vector<float> q = w;
    gptq_quantize(q.data(), rows, cols, DType::Q4_0, gptq_factor(x.data(), n, cols, o, pool), o, pool);
    int64_t same = 0;
    for (size_t i = 0; i < q.size(); ++i) same += q[i] == alone[i];
    return same;
  };
  const auto total = static_cast<int64_t>(w.size());
  EXPECT_GE(rounded(1e6), total * 99 / 100) << "of " << total;
  EXPECT_LT(rounded(0.0), total * 9 / 10) << "GPTQ itself moves many weights (the check can fail)";
  o.diagonal_damp = -1.0;
  EXPECT_THROW(gptq_factor(x.data(), n, cols, o, pool), Error);
}

TEST(Gptq, UncorrelatedInputsRoundEachWeightToItsBlocksNearestValue) {
  const int64_t rows = 5, cols = 96;
  // Sample t holds only channel t: H is diagonal, so no error is fed forward.
  std::vector<float> x(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t t = 0; t < cols; ++t) x[static_cast<size_t>(t * cols + t)] = 0.5f + static_cast<float>(t % 7);
  ThreadPool pool(2);
  GptqOptions o;
  o.scale_search = false;  // the format's own scales: plain rounding's grid
  const std::vector<float> v = gptq_factor(x.data(), cols, cols, o, pool);
  for (DType type : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(type));
    const std::vector<float> w = random_weights(rows, cols, 9);
    std::vector<float> ours = w;
    const std::vector<uint8_t> bytes = gptq_quantize(ours.data(), rows, cols, type, v, o, pool);
    ASSERT_EQ(bytes.size(), row_bytes(type, cols) * rows);
    // The bytes decode to the weights returned.
    std::vector<float> decoded(ours.size());
    const auto& k = kernels::quant_kernels(type);
    for (int64_t r = 0; r < rows; ++r)
      k.dequantize_row(bytes.data() + r * row_bytes(type, cols), decoded.data() + r * cols, cols);
    EXPECT_EQ(decoded, ours);
    // Every weight is the nearest of the values its block's bytes can hold (brute force over the codes).
    const int levels = type == DType::Q8_0 ? 256 : (type == DType::Q5_0 || type == DType::Q5_1) ? 32 : 16;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < cols / kBlock; ++b) {
        // The grid: decode a block whose codes run through every level (same d and m).
        std::vector<uint8_t> block(
            bytes.begin() + static_cast<std::ptrdiff_t>(r * row_bytes(type, cols) + b * row_bytes(type, kBlock)),
            bytes.begin() + static_cast<std::ptrdiff_t>(r * row_bytes(type, cols) + (b + 1) * row_bytes(type, kBlock)));
        std::vector<float> grid;
        for (int level = 0; level < levels; ++level) {
          std::vector<float> one(kBlock, 0.0f);
          // Encode `level` by quantizing nothing: write the code into every element of a copy.
          std::vector<uint8_t> copy = block;
          const size_t scale_bytes = (type == DType::Q4_1 || type == DType::Q5_1) ? 4 : 2;
          const size_t hi_bytes = (type == DType::Q5_0 || type == DType::Q5_1) ? 4 : 0;
          if (type == DType::Q8_0) {
            for (int j = 0; j < kBlock; ++j) copy[scale_bytes + j] = static_cast<uint8_t>(level - 128);
          } else {
            for (size_t j = 0; j < hi_bytes; ++j) copy[scale_bytes + j] = (level & 16) ? 0xFF : 0x00;
            for (int j = 0; j < kBlock / 2; ++j)
              copy[scale_bytes + hi_bytes + j] = static_cast<uint8_t>((level & 15) | ((level & 15) << 4));
          }
          k.dequantize_row(copy.data(), one.data(), kBlock);
          grid.push_back(one[0]);
        }
        // The block's scale comes from the weights themselves (H diagonal: nothing fed forward).
        for (int j = 0; j < kBlock; ++j) {
          const float wj = w[static_cast<size_t>(r * cols + b * kBlock + j)];
          float best = grid[0];
          for (float g : grid)
            if (std::fabs(g - wj) < std::fabs(best - wj)) best = g;
          EXPECT_EQ(std::fabs(ours[static_cast<size_t>(r * cols + b * kBlock + j)] - wj), std::fabs(best - wj))
              << "row " << r << " block " << b << " element " << j;
        }
      }
    // And plain rounding's scales: the same bytes as the format's quantizer up to its rounding rule
    // (it rounds with the unrounded scale), so the errors agree closely.
    std::vector<uint8_t> plain(bytes.size());
    std::vector<float> plain_w(ours.size());
    for (int64_t r = 0; r < rows; ++r) {
      k.quantize_weights(w.data() + r * cols, plain.data() + r * row_bytes(type, cols), cols);
      k.dequantize_row(plain.data() + r * row_bytes(type, cols), plain_w.data() + r * cols, cols);
    }
    EXPECT_NEAR(output_error(ours, w, rows, cols, x, cols), output_error(plain_w, w, rows, cols, x, cols),
                0.02 * output_error(plain_w, w, rows, cols, x, cols));
  }
}

TEST(Gptq, FeedingErrorsForwardLowersTheOutputErrorOfCorrelatedInputs) {
  const int64_t rows = 16, cols = 256, n = 1024;
  const std::vector<float> x = correlated_inputs(n, cols, 21), w = random_weights(rows, cols, 22);
  ThreadPool pool(2);
  GptqOptions o;  // the default: each column's own moment added once more
  GptqOptions published = o;
  published.diagonal_damp = 0.0;
  const std::vector<float> v = gptq_factor(x.data(), n, cols, o, pool),
                           v0 = gptq_factor(x.data(), n, cols, published, pool);
  for (DType type : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(type));
    std::vector<float> ours = w, gptq = w;
    gptq_quantize(ours.data(), rows, cols, type, v, o, pool);
    gptq_quantize(gptq.data(), rows, cols, type, v0, published, pool);
    std::vector<uint8_t> q(row_bytes(type, cols));
    std::vector<float> plain(w.size());
    const auto& k = kernels::quant_kernels(type);
    for (int64_t r = 0; r < rows; ++r) {
      k.quantize_weights(w.data() + r * cols, q.data(), cols);
      k.dequantize_row(q.data(), plain.data() + r * cols, cols);
    }
    const double e_gptq = output_error(gptq, w, rows, cols, x, n), e_plain = output_error(plain, w, rows, cols, x, n),
                 e_damped = output_error(ours, w, rows, cols, x, n);
    EXPECT_LT(e_gptq, 0.7 * e_plain) << "GPTQ " << e_gptq << ", plain " << e_plain;
    // The damped default sits between: less of the in-sample gain, most of it.
    EXPECT_LT(e_damped, 0.8 * e_plain) << "damped " << e_damped << ", plain " << e_plain;
    EXPECT_GT(e_damped, e_gptq) << "damped " << e_damped << ", GPTQ " << e_gptq;
  }
}

TEST(Gptq, ScaleSearchLowersEachBlocksWeightedError) {
  const int64_t rows = 8, cols = 256;
  // Uncorrelated inputs of unequal strength: H diagonal, so nothing is fed forward.
  std::vector<float> x(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t t = 0; t < cols; ++t) x[static_cast<size_t>(t * cols + t)] = 0.2f + static_cast<float>((t * 7) % 13);
  ThreadPool pool(2);
  GptqOptions o;
  o.scale_search = false;
  o.sink_weight = 1.0;
  o.diagonal_damp = 0.0;  // H itself: diagonal here, so the full factor is the diagonal one
  const std::vector<float> full = gptq_factor(x.data(), cols, cols, o, pool);
  o.diagonal = true;
  const std::vector<float> diag = gptq_factor(x.data(), cols, cols, o, pool);  // V's diagonal alone
  ASSERT_EQ(diag.size(), static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const float f = full[static_cast<size_t>(i * cols + j)], d = i == j ? diag[static_cast<size_t>(i)] : 0.0f;
      EXPECT_NEAR(d, f, 1e-3f * (1.0f + std::fabs(f)));
    }
  const std::vector<float> w = random_weights(rows, cols, 13);
  for (DType type : {DType::Q4_0, DType::Q5_0}) {
    SCOPED_TRACE(dtype_name(type));
    std::vector<float> by_max = w, searched = w;
    gptq_quantize(by_max.data(), rows, cols, type, diag, o, pool);
    o.scale_search = true;
    gptq_quantize(searched.data(), rows, cols, type, diag, o, pool);
    o.scale_search = false;
    // The weights the search uses: H_jj sqrt(σ² + w_j²).
    double total_max = 0.0, total_searched = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      double sigma2 = 0.0;
      for (int64_t j = 0; j < cols; ++j) sigma2 += double{w[r * cols + j]} * w[r * cols + j] / cols;
      for (int64_t b = 0; b < cols / kBlock; ++b) {
        double e_max = 0.0, e_searched = 0.0;
        for (int64_t j = b * kBlock; j < (b + 1) * kBlock; ++j) {
          const double h = double{diag[j]} * diag[j];
          const double imp = h * std::sqrt(sigma2 + double{w[r * cols + j]} * w[r * cols + j]);
          e_max += imp * std::pow(by_max[r * cols + j] - w[r * cols + j], 2);
          e_searched += imp * std::pow(searched[r * cols + j] - w[r * cols + j], 2);
        }
        EXPECT_LE(e_searched, e_max * 1.01 + 1e-12) << "row " << r << " block " << b;
        total_max += e_max;
        total_searched += e_searched;
      }
    }
    EXPECT_LT(total_searched, 0.9 * total_max);
  }
}

TEST(Gptq, TheFirstRowsWeightCountsItThatManyTimes) {
  const int64_t cols = 64, n = 200;
  std::vector<float> x = correlated_inputs(n, cols, 5);
  ThreadPool pool(2);
  GptqOptions o;
  // Weight 0: as if the first row were not there.
  o.sink_weight = 0.0;
  const std::vector<float> without_first = gptq_factor(x.data(), n, cols, o, pool);
  o.sink_weight = 1.0;
  const std::vector<float> rest = gptq_factor(x.data() + cols, n - 1, cols, o, pool);
  for (size_t i = 0; i < rest.size(); ++i) EXPECT_NEAR(without_first[i], rest[i], 1e-3f * (1.0f + std::fabs(rest[i])));
  // Weight 3: the same as the row written three times.
  o.sink_weight = 3.0;
  const std::vector<float> weighted = gptq_factor(x.data(), n, cols, o, pool);
  std::vector<float> repeated(x.begin(), x.begin() + cols);
  repeated.insert(repeated.end(), x.begin(), x.begin() + cols);
  repeated.insert(repeated.end(), x.begin(), x.end());
  o.sink_weight = 1.0;
  const std::vector<float> thrice = gptq_factor(repeated.data(), n + 2, cols, o, pool);
  for (size_t i = 0; i < thrice.size(); ++i) EXPECT_NEAR(weighted[i], thrice[i], 1e-3f * (1.0f + std::fabs(thrice[i])));
  // A heavy first row: its own output error falls.
  const std::vector<float> w = random_weights(8, cols, 6);
  const auto first_row_error = [&](double weight) {
    GptqOptions g;
    g.sink_weight = weight;
    std::vector<float> q = w;
    gptq_quantize(q.data(), 8, cols, DType::Q4_0, gptq_factor(x.data(), n, cols, g, pool), g, pool);
    return output_error(q, w, 8, cols, x, 1);
  };
  EXPECT_LT(first_row_error(1000.0), 0.5 * first_row_error(1.0));
  o.sink_weight = -1.0;
  EXPECT_THROW(gptq_factor(x.data(), n, cols, o, pool), Error) << "a negative weight";
}

TEST(Gptq, RefusesWhatItCannotWrite) {
  ThreadPool pool(1);
  const std::vector<float> x = correlated_inputs(64, 64, 1);
  GptqOptions o;
  const std::vector<float> v = gptq_factor(x.data(), 64, 64, o, pool);
  std::vector<float> w = random_weights(2, 64, 2);
  EXPECT_FALSE(gptq_supports(DType::Q4_K));
  EXPECT_THROW(gptq_quantize(w.data(), 2, 64, DType::Q4_K, v, o, pool), Error) << "not a 32-element format";
  EXPECT_THROW(gptq_quantize(w.data(), 4, 32, DType::Q4_0, v, o, pool), Error) << "a factor of another width";
  const std::vector<float> x48 = correlated_inputs(64, 48, 1);
  EXPECT_THROW(gptq_quantize(w.data(), 2, 48, DType::Q4_0, gptq_factor(x48.data(), 64, 48, o, pool), o, pool), Error)
      << "48 columns: not whole blocks";
  o.batch = 48;
  EXPECT_THROW(gptq_quantize(w.data(), 2, 64, DType::Q4_0, v, o, pool), Error) << "a batch that splits blocks";
  o = GptqOptions{};
  o.damp = 0.0;
  EXPECT_THROW(gptq_factor(x.data(), 64, 64, o, pool), Error) << "no damping";
  o.damp = 0.01;
  EXPECT_THROW(gptq_factor(x.data(), 0, 64, o, pool), Error) << "no inputs";
}

}  // namespace
}  // namespace kestrel
