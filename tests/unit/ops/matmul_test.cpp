// matmul (ops/matmul.h): every path against a double-precision product of the
// dequantized weight and the dequantized (quantized) activations, within the
// vec_dot tests' float-summation bound; the paths against each other; the
// lazily built PackedWeight under concurrent first use; its memory accounting.
#include "ops/matmul.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/quant_kernels.h"
#include "mapping_rss.h"
#include "platform/mmap.h"

namespace kestrel {
namespace {

constexpr double kEps = 1.0 / (1 << 24);

struct Case {
  DType type;
  int64_t rows, cols;
  std::vector<uint8_t> data;
  Weight w;
};

Case make_case(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  Case c{type, rows, cols, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const auto& k = kernels::quant_kernels(type, Isa::Scalar);
  const size_t stride = row_bytes(type, cols);
  c.data.resize(stride * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = g(rng) * (1.0f + static_cast<float>(r % 5));
    k.quantize_weights(row.data(), c.data.data() + static_cast<size_t>(r) * stride, cols);
  }
  c.w.name = "test";
  c.w.type = type;
  c.w.rows = rows;
  c.w.cols = cols;
  c.w.data = c.data.data();
  c.w.row_stride = stride;
  return c;
}

std::vector<float> activations(int64_t n_tokens, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_tokens * cols));
  for (auto& v : x) v = g(rng);
  return x;
}

// The min part of weight element i of a row (Q4_1/Q5_1's m, Q4_K/Q5_K's dmin * m_j): the
// kernels add it as a separate term, so it counts in the error magnitude.
double min_part(DType type, const uint8_t* row, int64_t i) {
  if (type == DType::Q4_1) return fp16_to_f32(reinterpret_cast<const kernels::BlockQ4_1*>(row)[i / 32].m);
  if (type == DType::Q5_1) return fp16_to_f32(reinterpret_cast<const kernels::BlockQ5_1*>(row)[i / 32].m);
  if (type == DType::Q4_K || type == DType::Q5_K) {
    // Q5_K's d, dmin and scales sit where Q4_K's do.
    const auto& b = reinterpret_cast<const kernels::BlockQ4K*>(row + (i / 256) * traits(type).block_bytes)[0];
    uint8_t sc, m;
    kernels::k_scale_min(static_cast<int>(i % 256 / 32), b.scales, &sc, &m);
    return static_cast<double>(fp16_to_f32(b.dmin)) * m;
  }
  return 0;
}

// Reference y and error magnitude per output, in double, from the dequantized
// weight and the activation rows after quantization to vec_dot_type. Q8_1's s
// is an fp16 rounding of d * sum(q), and Q4_1's min term uses it: the
// reference does the same.
void reference(const Case& c, const std::vector<float>& x, int64_t n_tokens, std::vector<double>* y,
               std::vector<double>* mag, int activation_bits = 8) {
  const auto& wk = kernels::quant_kernels(c.type, Isa::Scalar);
  const auto& ak = kernels::quant_kernels(wk.vec_dot_type, Isa::Scalar);
  std::vector<float> wd(static_cast<size_t>(c.rows * c.cols)), ad(static_cast<size_t>(n_tokens * c.cols));
  for (int64_t r = 0; r < c.rows; ++r) wk.dequantize_row(c.w.row(r), wd.data() + r * c.cols, c.cols);
  const size_t a_stride = row_bytes(wk.vec_dot_type, c.cols);
  std::vector<uint8_t> q(a_stride * static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    // act=a4: the format's 4-bit twin (the kernels must agree whichever codes they get).
    (activation_bits == 4 ? ak.quantize_row_a4 : ak.quantize_row)(x.data() + t * c.cols, q.data() + t * a_stride,
                                                                  c.cols);
    ak.dequantize_row(q.data() + t * a_stride, ad.data() + t * c.cols, c.cols);
  }
  y->assign(static_cast<size_t>(n_tokens * c.rows), 0.0);
  mag->assign(y->size(), 0.0);
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < c.rows; ++r) {
      double s = 0, m = 0;
      for (int64_t i = 0; i < c.cols; ++i) {
        const double a = ad[static_cast<size_t>(t * c.cols + i)];
        const double w = wd[static_cast<size_t>(r * c.cols + i)];
        s += w * a;
        m += (std::fabs(w) + std::fabs(min_part(c.type, c.w.row(r), i))) * std::fabs(a);
      }
      if (wk.vec_dot_type == DType::Q8_1) {
        const auto* ab = reinterpret_cast<const kernels::BlockQ8_1*>(q.data() + t * a_stride);
        for (int64_t b = 0; b < c.cols / 32; ++b) {
          double dsum = 0;
          for (int j = 0; j < 32; ++j) dsum += ad[static_cast<size_t>(t * c.cols + 32 * b + j)];
          s += min_part(c.type, c.w.row(r), 32 * b) * (fp16_to_f32(ab[b].s) - dsum);
        }
      }
      (*y)[static_cast<size_t>(t * c.rows + r)] = s;
      (*mag)[static_cast<size_t>(t * c.rows + r)] = m;
    }
}

std::vector<float> run(const Case& c, const std::vector<float>& x, int64_t n_tokens, ThreadPool& pool, Isa isa,
                       bool panels, bool amx, int activation_bits = 8) {
  Workspace ws;
  MatmulContext ctx{pool, ws, isa, {panels, amx ? AmxUse::Always : AmxUse::Never}};
  ctx.options.activation_bits = activation_bits;
  std::vector<float> y(static_cast<size_t>(n_tokens * c.rows), std::nanf(""));
  matmul(ctx, c.w, x.data(), n_tokens, y.data());
  return y;
}

struct Shape {
  int64_t rows, tokens;
};

TEST(Matmul, EveryPathMatchesDoubleReference) {
  ThreadPool pool(2);
  const DType types[] = {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K,
                         DType::Q5_0, DType::Q5_1, DType::Q5_K, DType::IQ4_NL, DType::IQ4_XS};
  const Shape shapes[] = {{37, 1}, {37, 2}, {64, 7}, {50, 16}, {33, 35}, {16, 64}};
  uint32_t seed = 1;
  for (DType type : types) {
    const int64_t cols = traits(type).block_size == 256 ? 512 : 96;
    for (const Shape& s : shapes) {
      const Case c = make_case(type, s.rows, cols, seed++);
      const std::vector<float> x = activations(s.tokens, cols, seed++);
      for (int bits : {8, 4}) {
        std::vector<double> want, mag;
        reference(c, x, s.tokens, &want, &mag, bits);
        for (Isa isa : supported_isas()) {
          for (int mode = 0; mode < 3; ++mode) {
            const std::vector<float> got = run(c, x, s.tokens, pool, isa, mode > 0, mode > 1, bits);
            for (size_t i = 0; i < got.size(); ++i) {
              // The float paths sum at most n/32 + a few terms of size <= mag; the
              // reference is exact enough to count as the true value.
              const double bound = (static_cast<double>(cols) / 32 + 8) * kEps * mag[i] + 1e-30;
              ASSERT_LE(std::fabs(got[i] - want[i]), bound)
                  << dtype_name(type) << " a" << bits << " " << isa_name(isa) << " mode " << mode << " rows=" << s.rows
                  << " tokens=" << s.tokens << " at token " << i / static_cast<size_t>(s.rows) << " row "
                  << i % static_cast<size_t>(s.rows) << ": " << got[i] << " vs " << want[i];
            }
          }
        }
      }
    }
  }
}

// F16 and BF16: the rows x tokens kernel (where the level has one) and the
// vec_dot path (`matmul=vecdot`) both give every (row, token) the bits of
// vec_dot on the activation row as quantize_row writes it, for row counts that
// split into several scheduling chunks and leave a partial tile.
TEST(Matmul, FloatWeightsGiveVecDotBitsOnEveryPath) {
  ThreadPool pool(2);
  for (DType type : {DType::F16, DType::BF16}) {
    const Case c = make_case(type, 101, 200, 3);
    for (int64_t tokens : {int64_t{1}, int64_t{2}, int64_t{9}}) {
      const std::vector<float> x = activations(tokens, c.cols, 4);
      for (Isa isa : supported_isas()) {
        const auto& k = kernels::quant_kernels(type, isa);
        std::vector<uint8_t> a(row_bytes(type, c.cols) * static_cast<size_t>(tokens));
        for (int64_t t = 0; t < tokens; ++t)
          k.quantize_row(x.data() + t * c.cols, a.data() + static_cast<size_t>(t) * row_bytes(type, c.cols), c.cols);
        for (bool panels : {true, false}) {
          const std::vector<float> got = run(c, x, tokens, pool, isa, panels, false);
          for (int64_t t = 0; t < tokens; ++t)
            for (int64_t r = 0; r < c.rows; ++r) {
              const float want =
                  k.vec_dot(c.cols, c.w.row(r), a.data() + static_cast<size_t>(t) * row_bytes(type, c.cols));
              const float y = got[static_cast<size_t>(t * c.rows + r)];
              ASSERT_EQ(std::memcmp(&y, &want, 4), 0)
                  << dtype_name(type) << " " << isa_name(isa) << " panels " << panels << " token " << t << " row " << r
                  << ": " << y << " vs " << want;
            }
        }
      }
    }
  }
}

// Weights sharing one input (QKV, gate/up) give the bits of one matmul each,
// fused (same format, panel path) or not (mixed formats, vec_dot), with biases.
TEST(Matmul, SharedInputGivesTheBitsOfSeparateMatmuls) {
  ThreadPool pool(2);
  Workspace ws;
  std::vector<Isa> isas = {Isa::Scalar};
  if (isa_supported(Isa::Avx2)) isas.push_back(Isa::Avx2);
  if (isa_supported(Isa::Avx512)) isas.push_back(Isa::Avx512);
  for (Isa isa : isas) {
    for (bool mixed : {false, true}) {
      Case a = make_case(DType::Q4_0, 48, 256, 1);
      Case b = make_case(mixed ? DType::Q8_0 : DType::Q4_0, 16, 256, 2);
      Case c = make_case(DType::Q4_0, 33, 256, 3);  // a partial last panel
      std::vector<float> bias(33);
      for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.25f * static_cast<float>(i);
      for (int64_t n : {1, 3, 17}) {
        const auto x = activations(n, 256, 7 + static_cast<uint32_t>(n));
        const MatmulContext ctx{pool, ws, isa, {}};
        std::vector<float> ya(n * 48), yb(n * 16), yc(n * 33), ra(ya.size()), rb(yb.size()), rc(yc.size());
        const SharedInputOutput outs[] = {{&a.w, nullptr, ya.data()}, {&b.w, nullptr, yb.data()},
                                          {&c.w, bias.data(), yc.data()}};
        matmul_shared_input(ctx, outs, x.data(), n);
        matmul(ctx, a.w, x.data(), n, ra.data());
        matmul(ctx, b.w, x.data(), n, rb.data());
        matmul_bias(ctx, c.w, bias.data(), x.data(), n, rc.data());
        EXPECT_EQ(ya, ra) << "isa " << isa_name(isa) << " mixed " << mixed << " n " << n;
        EXPECT_EQ(yb, rb) << "isa " << isa_name(isa) << " mixed " << mixed << " n " << n;
        EXPECT_EQ(yc, rc) << "isa " << isa_name(isa) << " mixed " << mixed << " n " << n;
      }
    }
  }
}

// A long prompt's tokens go to the panel kernels in blocks of about 128 KB of
// activation rows (24 tokens here: 16384 columns of Q8_K rows; the fewest a
// block holds), the last one taking a short remainder. Each token's row must be the bits of a call that
// holds it with other tokens, whatever the blocks: compared with matmuls over
// batches that straddle the blocks (and the shared-input path likewise).
TEST(Matmul, TokenBlocksGiveEveryTokenTheBitsOfOneBatch) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no panel kernels below AVX2";
  ThreadPool pool(2);
  Workspace ws;
  constexpr int64_t kCols = 16384, kTokens = 60;
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) continue;
    for (DType type : {DType::Q4_K, DType::Q4_0}) {
      const Case a = make_case(type, 40, kCols, 11), b = make_case(type, 24, kCols, 12);
      const std::vector<float> x = activations(kTokens, kCols, 13);
      const MatmulContext ctx{pool, ws, isa, {}};
      std::vector<float> ya(kTokens * 40), yb(kTokens * 24), ra(ya.size()), rb(yb.size());
      matmul(ctx, a.w, x.data(), kTokens, ya.data());
      const SharedInputOutput outs[] = {{&a.w, nullptr, ra.data()}, {&b.w, nullptr, rb.data()}};
      matmul_shared_input(ctx, outs, x.data(), kTokens);
      EXPECT_EQ(ya, ra) << dtype_name(type) << " " << isa_name(isa);
      // Blocks [0, 24), [24, 48), [48, 60); batches across them.
      for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 8}, {8, 30}, {30, 60}}) {
        const int64_t n = t1 - t0;
        std::vector<float> za(n * 40), zb(n * 24);
        matmul(ctx, a.w, x.data() + t0 * kCols, n, za.data());
        matmul(ctx, b.w, x.data() + t0 * kCols, n, zb.data());
        EXPECT_TRUE(std::equal(za.begin(), za.end(), ya.begin() + t0 * 40))
            << dtype_name(type) << " " << isa_name(isa) << " tokens " << t0 << ".." << t1;
        EXPECT_TRUE(std::equal(zb.begin(), zb.end(), rb.begin() + t0 * 24))
            << dtype_name(type) << " " << isa_name(isa) << " shared, tokens " << t0 << ".." << t1;
      }
    }
  }
}

TEST(Matmul, PathChoice) {
  EXPECT_EQ(matmul_path(DType::Q4_0, 8, Isa::Scalar), MatmulPath::VecDot);
  if (isa_supported(Isa::Avx2)) {
    // AVX2 panels (maddubs) for every batch size, never AMX; the 5- and 6-bit
    // formats decode through their panels too.
    EXPECT_EQ(matmul_path(DType::Q4_0, 8, Isa::Avx2), MatmulPath::Panels);
    EXPECT_EQ(matmul_path(DType::Q4_0, 1, Isa::Avx2), MatmulPath::Panels);
    EXPECT_EQ(matmul_path(DType::Q4_0, 16, Isa::Avx2, MatmulOptions{true, AmxUse::Always}), MatmulPath::Panels);
    EXPECT_EQ(matmul_path(DType::Q4_0, 8, Isa::Avx2, MatmulOptions{false, AmxUse::Never}), MatmulPath::VecDot);
    for (DType t : {DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      EXPECT_EQ(matmul_path(t, 1, Isa::Avx2), MatmulPath::Panels) << dtype_name(t);
      EXPECT_EQ(matmul_path(t, 2, Isa::Avx2), MatmulPath::Panels) << dtype_name(t);
    }
  }
  EXPECT_EQ(matmul_path(DType::F16, 8, Isa::Avx512), MatmulPath::VecDot);
  EXPECT_EQ(matmul_path(DType::Q4_0, 8, Isa::Avx512, MatmulOptions{false, AmxUse::Never}), MatmulPath::VecDot);
  if (isa_supported(Isa::Avx512)) {
    // Decode too: one kernel for every batch size.
    EXPECT_EQ(matmul_path(DType::Q4_0, 1, Isa::Avx512), MatmulPath::Panels);
    EXPECT_EQ(matmul_path(DType::Q8_0, 1, Isa::Avx512), MatmulPath::Panels);
    // The 5- and 6-bit formats at their own width, decode included.
    for (DType t : {DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL,
                    DType::IQ4_XS}) {
      EXPECT_EQ(matmul_path(t, 1, Isa::Avx512), MatmulPath::Panels) << dtype_name(t);
      EXPECT_EQ(matmul_path(t, 16, Isa::Avx512, MatmulOptions{true, AmxUse::Always}), MatmulPath::Panels)
          << dtype_name(t) << ": no AMX version";
    }
    EXPECT_EQ(matmul_path(DType::Q4_0, 8, Isa::Avx512), MatmulPath::Panels);
    EXPECT_EQ(matmul_path(DType::Q4_0, 64, Isa::Avx512, MatmulOptions{true, AmxUse::Never}), MatmulPath::Panels);
    // AMX needs a whole 16-token tile.
    EXPECT_EQ(matmul_path(DType::Q4_0, 15, Isa::Avx512, MatmulOptions{true, AmxUse::Always}), MatmulPath::Panels);
    if (kernels::panel_gemm_amx(DType::Q4_0, Isa::Avx512)) {
      EXPECT_EQ(matmul_path(DType::Q4_0, 16, Isa::Avx512, MatmulOptions{true, AmxUse::Always}), MatmulPath::PanelsAmx);
    }
  }
}

// Several threads (each with its own pool, as sessions have) hit a weight's
// first batched matmul at once: one packs, all get the same answer.
TEST(Matmul, PackedWeightBuiltOnceUnderConcurrentFirstUse) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no panel kernels below AVX2";
  const Case c = make_case(DType::Q4_0, 100, 256, 42);
  const std::vector<float> x = activations(9, 256, 43);
  const size_t before = packed_weight_bytes();
  std::vector<std::vector<float>> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      ThreadPool pool(2);
      results[static_cast<size_t>(i)] = run(c, x, 9, pool, Isa::Avx512, true, false);
    });
  for (auto& t : threads) t.join();
  for (int i = 1; i < 4; ++i)
    EXPECT_EQ(0, std::memcmp(results[0].data(), results[static_cast<size_t>(i)].data(), results[0].size() * 4));
  EXPECT_TRUE(c.w.packed->built());
  // 7 panels of 8 groups, each 16 x 16 nibble bytes + 16 F16 scales.
  EXPECT_EQ(packed_weight_bytes() - before, 7u * 8 * (256 + 32));
  Weight copy = c.w;  // copies share the packed data
  EXPECT_TRUE(copy.packed->built());
}

TEST(Matmul, PackedBytesReturnWhenWeightsGo) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no panel kernels below AVX2";
  const size_t before = packed_weight_bytes();
  {
    const Case c = make_case(DType::Q8_0, 32, 64, 3);
    ThreadPool pool(1);
    run(c, activations(4, 64, 4), 4, pool, Isa::Avx512, true, false);
    EXPECT_GT(packed_weight_bytes(), before);
  }
  EXPECT_EQ(packed_weight_bytes(), before);
}

// A weight in a file mapping is packed in slices of 4096 rows, each slice's
// GGUF pages given back once packed (ops/matmul.cpp): afterwards no whole page
// of the mapping is resident in the process, and the products are the bits of
// the same weight packed from ordinary memory in one piece.
TEST(Matmul, MappedWeightIsPackedInSlicesAndItsPagesGiveBack) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no panel kernels below AVX2";
  const Case c = make_case(DType::Q4_0, 9000, 64, 51);  // 3 slices, the last partial
  const std::string path =
      test::write_temp_file("kestrel_mapped_weight.bin", {reinterpret_cast<const char*>(c.data.data()), c.data.size()});
  const MappedFile file = MappedFile::open(path);
  Weight mapped;
  mapped.name = "mapped";
  mapped.type = c.w.type;
  mapped.rows = c.w.rows;
  mapped.cols = c.w.cols;
  mapped.data = file.data();
  mapped.row_stride = c.w.row_stride;
  mapped.file = &file;
  const long page = ::sysconf(_SC_PAGESIZE);
  auto resident = [&] { return test::mapping_resident_bytes(file.data()); };
  uint64_t sum = 0;
  for (size_t i = 0; i < file.size(); i += static_cast<size_t>(page)) sum += file.data()[i];  // page it all in
  EXPECT_GT(sum + 1, 0u);
  EXPECT_GE(resident(), static_cast<long>(file.size()) - page);

  ThreadPool pool(2);
  const std::vector<float> x = activations(3, 64, 52);
  Case plain = c;  // the same bytes in ordinary memory, its own packed slot
  plain.w.data = plain.data.data();
  plain.w.packed = std::make_shared<PackedWeightSlot>();
  const std::vector<float> want = run(plain, x, 3, pool, Isa::Avx512, true, false);
  Workspace ws;
  const MatmulContext ctx{pool, ws, Isa::Avx512, {}};
  std::vector<float> got(want.size());
  matmul(ctx, mapped, x.data(), 3, got.data());
  // drop_mapped_pages keeps partial pages: the file's last one.
  EXPECT_LE(resident(), page);
  ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kestrel
