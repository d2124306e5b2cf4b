// attn=sage and attn=int8 (kernels/attention_sage.h, attention_int8.h):
//  - the AVX2 row and tile kernels and the AVX-512 VNNI tiles against the scalar twins, bit for bit (every
//    dot product is an integer; the float steps run in the twins' order), over
//    paged blocks in scrambled order, partial blocks and rows that see
//    different prefixes;
//  - each algorithm against exact attention (double precision over the F16
//    cache's values) within a bound derived from its quantization: random
//    inputs, keys with a large shared offset (what smoothing is for), equal
//    keys and constant values.
#include "kernels/attention_int8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention_sage.h"
#include "kernels/attention_set.h"
#include "kernels/avx2/attention_avx2.h"

namespace kestrel::kernels {
namespace {

struct Head {
  int d;
  int64_t n, block_len;
  std::vector<int32_t> ids;
  std::vector<uint16_t> k, v;
  KvBlocks<uint16_t> blocks() const { return {k.data(), v.data(), ids.data(), block_len * d, block_len}; }
  double key(int64_t j, int c) const { return fp16_to_f32(k[static_cast<size_t>(ids[j / block_len] * block_len * d + (j % block_len) * d + c)]); }
  double val(int64_t j, int c) const { return fp16_to_f32(v[static_cast<size_t>(ids[j / block_len] * block_len * d + (j % block_len) * d + c)]); }
};

enum class Shape { Random, Offset, EqualKeys, ConstantV };

Head make_head(int d, int64_t n, int64_t block_len, Shape shape, uint32_t seed) {
  Head h{d, n, block_len, {}, {}, {}};
  const int64_t blocks = (n + block_len - 1) / block_len + 1;
  h.ids.resize(static_cast<size_t>(blocks));
  std::iota(h.ids.begin(), h.ids.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(h.ids.begin(), h.ids.end(), rng);
  h.k.assign(static_cast<size_t>(blocks * block_len * d), f32_to_fp16(1e4f));  // garbage if read
  h.v = h.k;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> offset(d), same_key(d), same_v(d);
  for (auto& x : offset) x = 20.0f * nd(rng);  // per-channel outliers shared by every key
  for (auto& x : same_key) x = 2.0f * nd(rng);
  for (auto& x : same_v) x = nd(rng);
  for (int64_t j = 0; j < n; ++j)
    for (int c = 0; c < d; ++c) {
      const size_t at = static_cast<size_t>(h.ids[j / block_len] * block_len * d + (j % block_len) * d + c);
      float kx = 2.0f * nd(rng), vx = nd(rng);
      if (shape == Shape::Offset) kx = offset[c] + nd(rng);
      if (shape == Shape::EqualKeys) kx = same_key[c];
      if (shape == Shape::ConstantV) vx = same_v[c];
      h.k[at] = f32_to_fp16(kx);
      h.v[at] = f32_to_fp16(vx);
    }
  return h;
}

void expect_same_bits(const float* a, const float* b, int d, const std::string& where) {
  for (int i = 0; i < d; ++i) {
    uint32_t x, y;
    std::memcpy(&x, a + i, 4);
    std::memcpy(&y, b + i, 4);
    ASSERT_EQ(x, y) << where << " i " << i << ": " << a[i] << " vs " << b[i];
  }
}

using RowFn = void (*)(const KvBlocks<uint16_t>&, int64_t, int, const float*, float, float*);
using TileFn = void (*)(const KvBlocks<uint16_t>&, int, const TileRows&, float, float*);
void sage_twin(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  ref::attend_sage_f16(kv, n, d, q, scale, out);
}
struct Algo {
  const char* name;
  RowFn twin_row, simd_row;
  TileFn twin_tile, simd_tile;
};
const Algo kAlgos[] = {
    {"sage", sage_twin, avx2::attend_sage_f16, ref::attend_tile_sage_f16, avx2::attend_tile_sage_f16},
    {"int8", ref::attend_int8_f16, avx2::attend_int8_f16, ref::attend_tile_int8_f16, avx2::attend_tile_int8_f16},
};
// AVX-512 has VNNI prompt tiles only (its rows are the AVX2 ones).
const Algo kAlgos512[] = {
    {"sage", sage_twin, nullptr, ref::attend_tile_sage_f16, avx512::attend_tile_sage_f16},
    {"int8", ref::attend_int8_f16, nullptr, ref::attend_tile_int8_f16, avx512::attend_tile_int8_f16},
};

std::vector<float> random_q(int d, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> q(static_cast<size_t>(d));
  for (auto& x : q) x = nd(rng);
  return q;
}

void expect_twins_bits(std::span<const Algo> algos) {
  uint32_t seed = 1;
  for (const Algo& a : algos)
    for (int d : {32, 64, 128})
      for (int64_t block_len : {7, 16, 64})
        for (Shape shape : {Shape::Random, Shape::Offset, Shape::EqualKeys}) {
          const int64_t n = 150;
          const Head h = make_head(d, n, block_len, shape, seed++);
          const float scale = 1.0f / std::sqrt(static_cast<float>(d));
          const std::string where = std::string(a.name) + " d " + std::to_string(d) + " block " +
                                    std::to_string(block_len) + " shape " + std::to_string(static_cast<int>(shape));
          std::vector<float> want(static_cast<size_t>(d)), got(want.size());
          for (int64_t m : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{64}, n}) {
            if (a.simd_row == nullptr) break;
            const std::vector<float> q = random_q(d, seed + static_cast<uint32_t>(m));
            a.twin_row(h.blocks(), m, d, q.data(), scale, want.data());
            a.simd_row(h.blocks(), m, d, q.data(), scale, got.data());
            expect_same_bits(want.data(), got.data(), d, where + " row n " + std::to_string(m));
          }
          // Tiles of rows seeing different prefixes: causal-like and repeated, and
          // a prompt's tile (query heads sharing a token, every row seeing the
          // first 100 keys: blocks every row sees whole take the SIMD tile's
          // shared path, the rest its per-count path, in groups of 3, 2 and 1).
          constexpr int kRows = 10;
          const int64_t tiles[2][kRows] = {{1, 16, 17, 63, 64, 65, 100, 149, 150, 150},
                                           {100, 100, 100, 120, 120, 120, 131, 149, 150, 150}};
          for (const int64_t* vis : tiles) {
            std::vector<std::vector<float>> q(kRows), ot(kRows, std::vector<float>(d)), os = ot;
            const float* qp[kRows];
            float *tp[kRows], *sp[kRows];
            for (int r = 0; r < kRows; ++r) {
              q[r] = random_q(d, seed * 100 + static_cast<uint32_t>(r));
              qp[r] = q[r].data();
              tp[r] = ot[r].data();
              sp[r] = os[r].data();
            }
            std::vector<float> scratch(tile_scratch_floats(d));
            a.twin_tile(h.blocks(), d, TileRows{qp, tp, vis, kRows}, scale, scratch.data());
            a.simd_tile(h.blocks(), d, TileRows{qp, sp, vis, kRows}, scale, scratch.data());
            for (int r = 0; r < kRows; ++r) {
              a.twin_row(h.blocks(), vis[r], d, qp[r], scale, want.data());
              expect_same_bits(want.data(), ot[r].data(), d, where + " twin tile vs twin row " + std::to_string(r));
              expect_same_bits(ot[r].data(), os[r].data(), d, where + " tile row " + std::to_string(r));
            }
          }
        }
}

TEST(AttentionInt8Avx2, RowsAndTilesEqualTheTwinsBitForBit) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  expect_twins_bits(kAlgos);
}

TEST(AttentionInt8Avx512, VnniTilesEqualTheTwinsBitForBit) {
  if (!isa_supported(Isa::Avx512)) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  expect_twins_bits(kAlgos512);
}

// The bound of each algorithm against exact attention, from its quantization:
//  scores: q = sq q8 + e_q, k = sk k8 + e_k with |e_q| <= sq/2, |e_k| <= sk/2
//    (sage: k after subtracting the block mean, which shifts a block's scores
//    alike and changes nothing), so a score moves by at most
//    delta_j = scale (sq/2 sum|k_j| + sk/2 sum|q| + d sq sk / 4), and the
//    softmax weights by a factor within e^{+-2 delta}: the output by at most
//    (e^{2 delta} - 1) max|v|.
//  int8 also rounds V per channel (at most max|v| / 254) and every weight
//    (to 1/255 of its block's largest, at most 1/510 of the row's largest in
//    the end); the weights sum to at least W = max(1, L e^{-2 delta} - n/510)
//    (L: the exact weights' sum with the largest 1), so the output moves by at
//    most 2 max|v| (1 + 1/254) n / 510 / W from that.
//  plus float rounding: of the scores (in delta), of the output 1e-5 max|v|.
double bound(const Head& h, const std::vector<float>& q, int64_t n, float scale, bool int8) {
  const int d = h.d;
  double qmax = 0, qsum = 0;
  for (float x : q) {
    qmax = std::max(qmax, static_cast<double>(std::fabs(x)));
    qsum += std::fabs(x);
  }
  const double sq = qmax / 127;
  double delta = 0, vm = 0;
  for (int64_t first = 0; first < n; first += h.block_len) {
    const int64_t rows = std::min(h.block_len, n - first);
    std::vector<double> mean(d, 0.0);
    if (!int8)
      for (int64_t j = first; j < first + rows; ++j)
        for (int c = 0; c < d; ++c) mean[c] += h.key(j, c) / static_cast<double>(rows);
    double bmax = 0;
    for (int64_t j = first; j < first + rows; ++j)
      for (int c = 0; c < d; ++c) bmax = std::max(bmax, std::fabs(h.key(j, c) - mean[c]));
    for (int64_t j = first; j < first + rows; ++j) {
      double kabs = 0, kmax = 0, qk = 0;
      for (int c = 0; c < d; ++c) {
        qk += std::fabs(q[c] * h.key(j, c));
        kabs += std::fabs(h.key(j, c) - mean[c]);
        kmax = std::max(kmax, std::fabs(h.key(j, c)));
        vm = std::max(vm, std::fabs(h.val(j, c)));
      }
      const double sk = (int8 ? kmax : bmax) / 127 * (1 + 1e-6);
      // The last term: float rounding of the mean, q . mean and the scales, d
      // roundings of 2^-24 of sum |q k| at most.
      delta = std::max(delta, scale * (sq / 2 * kabs + sk / 2 * qsum + d * sq * sk / 4 + 2 * d * 6e-8 * qk));
    }
  }
  double tol = (std::exp(2 * delta) - 1) * vm + 1e-5 * vm;
  if (int8) {
    std::vector<double> s(static_cast<size_t>(n));
    double mx = -1e300, l = 0;
    for (int64_t j = 0; j < n; ++j) {
      double a = 0;
      for (int c = 0; c < d; ++c) a += static_cast<double>(q[c]) * h.key(j, c);
      mx = std::max(mx, s[j] = a * scale);
    }
    for (double x : s) l += std::exp(x - mx);
    const double w = std::max(1.0, l * std::exp(-2 * delta) - static_cast<double>(n) / 510);
    tol += vm / 254 + 2 * vm * (1 + 1.0 / 254) * static_cast<double>(n) / 510 / w;
  }
  return tol;
}

std::vector<double> exact(const Head& h, const std::vector<float>& q, int64_t n, float scale) {
  std::vector<double> s(static_cast<size_t>(n)), out(h.d, 0.0);
  double mx = -1e300, l = 0;
  for (int64_t j = 0; j < n; ++j) {
    double a = 0;
    for (int c = 0; c < h.d; ++c) a += static_cast<double>(q[c]) * h.key(j, c);
    mx = std::max(mx, s[j] = a * scale);
  }
  for (int64_t j = 0; j < n; ++j) {
    const double p = std::exp(s[j] - mx);
    l += p;
    for (int c = 0; c < h.d; ++c) out[c] += p * h.val(j, c);
  }
  for (auto& o : out) o /= l;
  return out;
}

TEST(AttentionInt8, EachAlgorithmStaysWithinItsQuantizationBoundOfExact) {
  uint32_t seed = 900;
  for (const Algo& a : kAlgos) {
    double worst_ratio = 0, worst_err = 0;
    for (int d : {64, 128})
      for (Shape shape : {Shape::Random, Shape::Offset, Shape::EqualKeys, Shape::ConstantV})
        for (int64_t n : {int64_t{1}, int64_t{40}, int64_t{300}}) {
          const Head h = make_head(d, n, 16, shape, seed++);
          const float scale = 1.0f / std::sqrt(static_cast<float>(d));
          const std::vector<float> q = random_q(d, seed);
          const bool int8 = std::string(a.name) == "int8";
          const std::vector<double> want = exact(h, q, n, scale);
          const double tol = bound(h, q, n, scale, int8);
          std::vector<float> got(static_cast<size_t>(d));
          a.twin_row(h.blocks(), n, d, q.data(), scale, got.data());
          double worst = 0;
          for (int c = 0; c < d; ++c) worst = std::max(worst, std::fabs(got[c] - want[c]));
          const std::string where = std::string(a.name) + " d " + std::to_string(d) + " n " + std::to_string(n) +
                                    " shape " + std::to_string(static_cast<int>(shape));
          EXPECT_LE(worst, tol) << where;
          worst_ratio = std::max(worst_ratio, worst / tol);
          worst_err = std::max(worst_err, worst);
          // Equal keys in a block: sage's smoothed keys are all 0, so every
          // score is scale * q . mean and the output is the values' mean up to
          // float rounding (no quantization error at all).
          if (shape == Shape::EqualKeys && !int8) {
            EXPECT_LE(worst, 1e-5) << where;
          }
          // A bound that cannot fail would prove nothing: for random keys the
          // quantization shows, and stays far below it for exact attention's
          // own float rounding.
          if (shape == Shape::Random && n > 1) {
            EXPECT_GT(worst, 1e-6) << where << ": no quantization error?";
          }
        }
    std::cout << a.name << ": largest error " << worst_err << ", largest error / bound " << worst_ratio << "\n";
  }
}

TEST(AttentionInt8, OnTheFlyOverTheF16CacheOrInt8InTheCacheAndTheSetRunsTheTwinsAtScalar) {
  EXPECT_TRUE(has_attention_kernels(DType::F16, AttentionAlgo::Sage));
  EXPECT_TRUE(has_attention_kernels(DType::F16, AttentionAlgo::Int8));
  EXPECT_FALSE(has_attention_kernels(DType::BF16, AttentionAlgo::Sage));
  EXPECT_TRUE(has_attention_kernels(DType::Q8_0, AttentionAlgo::Int8));  // INT8 K and V in the cache
  EXPECT_FALSE(has_attention_kernels(DType::Q4_0, AttentionAlgo::Int8));
  EXPECT_FALSE(has_attention_kernels(DType::F32, AttentionAlgo::Int8));
  const std::string pairs = attention_pairs_text();
  EXPECT_NE(pairs.find("sage: K f16 V f16"), std::string::npos) << pairs;
  EXPECT_NE(pairs.find("int8: K f16 V f16, K q8_0 V q8_0"), std::string::npos) << pairs;
  const Head h = make_head(64, 40, 16, Shape::Random, 5);
  const std::vector<float> q = random_q(64, 6);
  const KvRows erased{h.k.data(), h.v.data(), h.ids.data(), 16 * 64 * 2, 16};
  std::vector<float> a(64), b(64);
  for (const Algo& al : kAlgos) {
    const AttentionAlgo algo = *attention_algo_from_name(al.name);
    attention_kernel_set(DType::F16, algo, Isa::Scalar).row(erased, 40, 64, q.data(), 0.125f, a.data());
    al.twin_row(h.blocks(), 40, 64, q.data(), 0.125f, b.data());
    EXPECT_EQ(a, b) << al.name;
  }
}

}  // namespace
}  // namespace kestrel::kernels
