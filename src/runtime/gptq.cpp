#include "runtime/gptq.h"

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/quant_kernels.h"
#include "platform/thread_pool.h"

namespace kestrel {

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;

constexpr int64_t kBlock = kernels::kQK;

float as_stored(float v) { return fp16_to_f32(f32_to_fp16(v)); }

// A block's grid: the values d * q + m, q in [lo, hi] (the format's codes).
struct Grid {
  float d = 0.0f, m = 0.0f;
  int lo = 0, hi = 0;
  int flat = 0;  // the code of every element when d is 0 (all values equal), as the format's quantizer writes it
  int nearest(float x) const {
    if (d == 0.0f) return flat;
    const float q = std::nearbyint((x - m) / d);
    return static_cast<int>(std::clamp(q, static_cast<float>(lo), static_cast<float>(hi)));
  }
  float value(int q) const { return d * static_cast<float>(q) + m; }
};

float signed_absmax(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int64_t j = 0; j < kBlock; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

// The importance-weighted scale search llama.cpp runs with an imatrix (ggml's
// make_qx_quants) for a symmetric format of codes -half..half-1: the scales
// max / -(half + i/10), i in -9..9, each refitted by least squares on the codes
// it gives; the one whose refit leaves the least weighted error Σ w (x - d l)².
float searched_scale(const float* x, const float* w, float half) {
  const float max = signed_absmax(x);
  if (max == 0.0f) return 0.0f;
  float best_d = max / -half;
  double best = -1.0;
  for (int i = -9; i <= 9; ++i) {
    const float iscale = -(half + 0.1f * static_cast<float>(i)) / max;
    double sumlx = 0.0, suml2 = 0.0;
    for (int64_t j = 0; j < kBlock; ++j) {
      const float l = std::clamp(std::nearbyint(iscale * x[j]), -half, half - 1.0f);
      sumlx += double{w[j]} * x[j] * l;
      suml2 += double{w[j]} * l * l;
    }
    if (suml2 > 0.0 && sumlx * sumlx / suml2 > best) {
      best = sumlx * sumlx / suml2;
      best_d = static_cast<float>(sumlx / suml2);
    }
  }
  return best_d;
}

// Where a block's fields sit (kernels/blocks.h): d (F16) first, m (F16) in the
// formats with a minimum, the fifth bits (4 bytes) in the 5-bit ones, then the
// codes: nibbles (element j low, j + 16 high), or one byte each.
struct Layout {
  bool min = false, fifth_bit = false, bytes = false;
  int offset = 0;  // the code of the value 0 in the symmetric formats (x = d (q - offset))
};

Layout layout_of(DType type) {
  switch (type) {
    case DType::Q4_0:
      return {.offset = 8};
    case DType::Q4_1:
      return {.min = true};
    case DType::Q5_0:
      return {.fifth_bit = true, .offset = 16};
    case DType::Q5_1:
      return {.min = true, .fifth_bit = true};
    case DType::Q8_0:
      return {.bytes = true};
    default:
      fail("gptq: ", dtype_name(type), " is not a 32-element block format GPTQ can write");
  }
}

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// The grid the format's own quantizer gives x (its scale rule, F16 as stored);
// with `w` (Q4_0, Q5_0), the weighted search above instead.
Grid block_grid(DType type, const Layout& l, const float* x, const float* w) {
  std::array<uint8_t, sizeof(kernels::BlockQ8_0)> block{};  // the largest of the five
  kernels::quant_kernels(type).quantize_weights(x, block.data(), kBlock);
  Grid g;
  g.d = w ? as_stored(searched_scale(x, w, static_cast<float>(l.offset))) : f16_at(block.data());
  g.m = l.min ? f16_at(block.data() + 2) : static_cast<float>(-l.offset) * g.d;
  g.lo = l.bytes ? -128 : 0;
  g.hi = l.bytes ? 127 : l.fifth_bit ? 31 : 15;
  g.flat = l.offset;
  return g;
}

// One block's bytes from its grid and codes.
void encode_block(const Layout& l, const Grid& g, const int* q, uint8_t* dst) {
  const uint16_t d = f32_to_fp16(g.d), m = f32_to_fp16(g.m);
  std::memcpy(dst, &d, 2);
  size_t at = 2;
  if (l.min) {
    std::memcpy(dst + at, &m, 2);
    at += 2;
  }
  if (l.fifth_bit) {
    uint32_t bits = 0;
    for (int64_t j = 0; j < kBlock; ++j) bits |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    std::memcpy(dst + at, &bits, 4);
    at += 4;
  }
  if (l.bytes) {
    for (int64_t j = 0; j < kBlock; ++j)
      dst[at + static_cast<size_t>(j)] = static_cast<uint8_t>(static_cast<int8_t>(q[j]));
  } else {
    for (int64_t j = 0; j < kBlock / 2; ++j)
      dst[at + static_cast<size_t>(j)] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kBlock / 2] & 0xF) << 4));
  }
}

}  // namespace

bool gptq_supports(DType type) {
  return type == DType::Q4_0 || type == DType::Q4_1 || type == DType::Q5_0 || type == DType::Q5_1 ||
         type == DType::Q8_0;
}

std::vector<float> gptq_factor(const float* x, int64_t n, int64_t cols, const GptqOptions& o, ThreadPool& pool) {
  if (n < 1 || cols < 1) fail("gptq: ", n, " input rows of ", cols, " values");
  if (!(o.damp > 0.0)) fail("gptq: the damping must be positive, got ", o.damp);
  if (!(o.sink_weight >= 0.0)) fail("gptq: the first row's weight must not be negative, got ", o.sink_weight);
  if (!(o.diagonal_damp >= 0.0) || !std::isfinite(o.diagonal_damp))
    fail("gptq: the diagonal damping must be a finite number >= 0, got ", o.diagonal_damp);
  if (o.diagonal) {  // V = diag(sqrt(H_jj)): no error is fed forward
    std::vector<double> h(static_cast<size_t>(cols), 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < cols; ++j)
        h[static_cast<size_t>(j)] += (t == 0 ? o.sink_weight : 1.0) * x[t * cols + j] * x[t * cols + j];
    return gptq_diagonal_factor(h, o.damp);
  }
  // H = Σ x xᵀ (lower triangle), one partial sum per thread.
  // (A thread may run more than one chunk: each adds to its own sum.)
  std::vector<Matrix> parts(static_cast<size_t>(pool.size()), Matrix::Zero(cols, cols));
  pool.parallel_for(n, [&](int64_t t0, int64_t t1, int ith) {
    parts[static_cast<size_t>(ith)].selfadjointView<Eigen::Lower>().rankUpdate(
        ConstMatrixMap(x + t0 * cols, t1 - t0, cols).transpose());
  });
  Matrix h = std::move(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) h += parts[i];
  if (o.sink_weight != 1.0)  // the first row once more, times (weight - 1)
    h.selfadjointView<Eigen::Lower>().rankUpdate(ConstMatrixMap(x, 1, cols).transpose(),
                                                 static_cast<float>(o.sink_weight - 1.0));
  const double mean = static_cast<double>(h.diagonal().mean());
  h.diagonal().array() *= static_cast<float>(1.0 + o.diagonal_damp);
  h.diagonal().array() += static_cast<float>(mean > 0.0 ? o.damp * mean : 1.0);
  // V Vᵀ = H with V upper: the lower factor of H with rows and columns reversed, reversed back.
  Matrix reversed = h.selfadjointView<Eigen::Lower>();
  reversed = reversed.colwise().reverse().eval();
  reversed = reversed.rowwise().reverse().eval();
  const Eigen::LLT<Matrix, Eigen::Lower> llt(reversed);
  if (llt.info() != Eigen::Success) fail("gptq: the inputs' second moments are not positive definite");
  Matrix l = llt.matrixL();
  std::vector<float> v(static_cast<size_t>(cols * cols));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) v[static_cast<size_t>(i * cols + j)] = l(cols - 1 - i, cols - 1 - j);
  return v;
}

std::vector<float> gptq_diagonal_factor(const std::vector<double>& h, double damp) {
  if (!(damp > 0.0)) fail("gptq: the damping must be positive, got ", damp);
  const auto cols = static_cast<int64_t>(h.size());
  double mean = 0.0;
  for (double v : h) {
    if (!(v >= 0.0) || !std::isfinite(v)) fail("gptq: a column's sum of squares is ", v);
    mean += v / static_cast<double>(cols);
  }
  std::vector<float> v(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j)
    v[static_cast<size_t>(j)] =
        static_cast<float>(std::sqrt(h[static_cast<size_t>(j)] + (mean > 0.0 ? damp * mean : 1.0)));
  return v;
}

std::vector<uint8_t> gptq_quantize(float* w, int64_t rows, int64_t cols, DType type, const std::vector<float>& v,
                                   const GptqOptions& o, ThreadPool& pool) {
  if (!gptq_supports(type)) fail("gptq: ", dtype_name(type), " is not a 32-element block format GPTQ can write");
  if (cols % kBlock != 0) fail("gptq: ", cols, " columns are not a whole number of ", kBlock, "-element blocks");
  if (o.batch < kBlock || o.batch % kBlock != 0) fail("gptq: a batch of ", o.batch, " columns is not a multiple of 32");
  const bool diagonal = o.diagonal;  // v holds V's diagonal only, and nothing is fed forward
  if (static_cast<int64_t>(v.size()) != (diagonal ? cols : cols * cols))
    fail("gptq: a ", diagonal ? "diagonal " : "", "factor of ", v.size(), " values for ", cols, " columns");
  const ConstMatrixMap vm(v.data(), diagonal ? 0 : cols, diagonal ? 0 : cols);
  const auto v_kk = [&](int64_t k) { return diagonal ? v[static_cast<size_t>(k)] : vm(k, k); };
  const size_t block_bytes = row_bytes(type, kBlock);
  const int64_t blocks = cols / kBlock;
  std::vector<uint8_t> out(row_bytes(type, cols) * static_cast<size_t>(rows));
  // The inverses of V's 32 x 32 diagonal blocks: at a block's start, its columns'
  // best estimates given every earlier column rounded (see block_start below).
  std::vector<Matrix> block_inverse(diagonal ? 0 : static_cast<size_t>(blocks));
  for (size_t b = 0; b < block_inverse.size(); ++b)
    block_inverse[b] = vm.block(static_cast<int64_t>(b) * kBlock, static_cast<int64_t>(b) * kBlock, kBlock, kBlock)
                           .triangularView<Eigen::Upper>()
                           .solve(Matrix::Identity(kBlock, kBlock));
  // H's diagonal (the rows of V squared), for the weighted scale search.
  std::vector<float> h_diag(static_cast<size_t>(cols), 0.0f);
  if (o.scale_search)
    for (int64_t j = 0; j < cols; ++j)
      h_diag[static_cast<size_t>(j)] = diagonal ? v_kk(j) * v_kk(j) : vm.row(j).tail(cols - j).squaredNorm();
  const Layout layout = layout_of(type);
  const bool search = o.scale_search && layout.offset > 0;
  pool.parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
    const int64_t nr = r1 - r0;
    MatrixMap wm(w + r0 * cols, nr, cols);
    const Matrix w0 = wm;                 // the original weights
    Matrix acc = Matrix::Zero(nr, diagonal ? 0 : cols);  // Σ_{j<k} (w_j - q_j) V_jk, column k
    Matrix residual(nr, o.batch);         // w_j - q_j of the batch's columns
    std::vector<int> codes(static_cast<size_t>(nr * cols));
    std::vector<Grid> grids(static_cast<size_t>(nr * blocks));
    std::array<float, kBlock> current{}, importance{};
    for (int64_t i1 = 0; i1 < cols; i1 += o.batch) {
      const int64_t i2 = std::min(cols, i1 + o.batch);
      for (int64_t k = i1; k < i2; ++k) {
        if (k % kBlock == 0) {
          // block_start: with the columns before k rounded (δ_Q = q_Q - w_Q fixed), the
          // later columns F that keep |δ X|² least are w_F + acc_F V_FF⁻¹ (acc = -δ_Q V_QF;
          // H = V Vᵀ split at k). V_FF⁻¹ is upper triangular, so this block's columns need
          // only the inverse of its diagonal block. These are the weights GPTQ's textbook
          // form holds when it reaches the block: its scale is set from them.
          for (int64_t r = 0; r < nr; ++r) {
            for (int64_t j = 0; j < kBlock; ++j) {
              float e = 0.0f;
              if (!diagonal)
                for (int64_t i = 0; i <= j; ++i)
                  e += acc(r, k + i) * block_inverse[static_cast<size_t>(k / kBlock)](i, j);
              current[static_cast<size_t>(j)] = w0(r, k + j) + e;
            }
            if (search) {  // llama.cpp's imatrix weights: H_jj sqrt(σ² + w_j²), σ² the row's mean square
              const float sigma2 = w0.row(r).squaredNorm() / static_cast<float>(cols);
              for (int64_t j = 0; j < kBlock; ++j)
                importance[static_cast<size_t>(j)] =
                    h_diag[static_cast<size_t>(k + j)] *
                    std::sqrt(sigma2 + current[static_cast<size_t>(j)] * current[static_cast<size_t>(j)]);
            }
            grids[static_cast<size_t>(r * blocks + k / kBlock)] =
                block_grid(type, layout, current.data(), search ? importance.data() : nullptr);
          }
        }
        for (int64_t r = 0; r < nr; ++r) {
          const Grid& g = grids[static_cast<size_t>(r * blocks + k / kBlock)];
          const int q = g.nearest(diagonal ? w0(r, k) : w0(r, k) + acc(r, k) / v_kk(k));
          codes[static_cast<size_t>(r * cols + k)] = q;
          const float rounded = g.value(q);
          wm(r, k) = rounded;
          residual(r, k - i1) = w0(r, k) - rounded;
        }
        if (k + 1 < i2 && !diagonal)
          acc.middleCols(k + 1, i2 - k - 1).noalias() += residual.col(k - i1) * vm.row(k).segment(k + 1, i2 - k - 1);
      }
      if (i2 < cols && !diagonal)
        acc.rightCols(cols - i2).noalias() += residual.leftCols(i2 - i1) * vm.block(i1, i2, i2 - i1, cols - i2);
    }
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t b = 0; b < blocks; ++b)
        encode_block(
            layout, grids[static_cast<size_t>(r * blocks + b)], codes.data() + r * cols + b * kBlock,
            out.data() + static_cast<size_t>(r0 + r) * blocks * block_bytes + static_cast<size_t>(b) * block_bytes);
  });
  return out;
}

}  // namespace kestrel
