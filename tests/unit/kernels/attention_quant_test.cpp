// Attention over quantized and mixed KV caches (kernels/attention_quant.h):
// the scalar twin against a double-precision softmax attention over what the
// cache holds, within a bound derived from q's quantization to K's vec_dot
// type; the AVX2 and AVX-512 row kernels against the twin within the bound of
// the format's vec_dot summation order; the tiled kernels against the reference
// and each other (bit for bit: same dequantizers, the tiled F32 algorithm). Paged
// blocks in scrambled order, head sizes 64 and 128.
#include "kernels/attention_quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/attention_set.h"
#include "kernels/avx2/attention_avx2.h"

namespace kestrel::kernels {
namespace {

constexpr double kEps = 1.0 / (1 << 24);

struct QuantHead {
  DType kt, vt;
  int d;
  int64_t block_len = 16;
  std::vector<int32_t> ids;
  std::vector<uint8_t> k, v;
  size_t kr, vr;
  std::vector<std::vector<double>> kd, vd;  // what the cache holds, dequantized

  QuantHead(DType kt_, DType vt_, int64_t n, int d_, uint32_t seed) : kt(kt_), vt(vt_), d(d_) {
    kr = row_bytes(kt, d);
    vr = row_bytes(vt, d);
    const int64_t blocks = (n + block_len - 1) / block_len + 1;
    ids.resize(static_cast<size_t>(blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    k.assign(static_cast<size_t>(blocks * block_len) * kr, 0);
    v.assign(static_cast<size_t>(blocks * block_len) * vr, 0);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(d), back(d);
    for (int64_t pos = 0; pos < n; ++pos) {
      const int64_t slot = ids[pos / block_len] * block_len + pos % block_len;
      for (auto& e : x) e = 2.0f * nd(rng);
      uint8_t* kp = k.data() + slot * kr;
      quant_kernels(kt, Isa::Scalar).quantize_row(x.data(), kp, d);
      quant_kernels(kt, Isa::Scalar).dequantize_row(kp, back.data(), d);
      kd.emplace_back(back.begin(), back.end());
      for (auto& e : x) e = nd(rng);
      uint8_t* vp = v.data() + slot * vr;
      quant_kernels(vt, Isa::Scalar).quantize_row(x.data(), vp, d);
      quant_kernels(vt, Isa::Scalar).dequantize_row(vp, back.data(), d);
      vd.emplace_back(back.begin(), back.end());
    }
  }
  KvRows rows() const {
    return KvRows{k.data(), v.data(), ids.data(), block_len * static_cast<int64_t>(kr), block_len,
                  block_len * static_cast<int64_t>(vr), kt, vt};
  }
};

std::vector<double> reference(const QuantHead& h, const std::vector<double>& q, int64_t n, double scale) {
  std::vector<double> s(n), out(h.d, 0.0);
  double m = -1e300, l = 0;
  for (int64_t j = 0; j < n; ++j) {
    double dot = 0;
    for (int c = 0; c < h.d; ++c) dot += q[c] * h.kd[j][c];
    s[j] = dot * scale;
    m = std::max(m, s[j]);
  }
  for (int64_t j = 0; j < n; ++j) {
    const double p = std::exp(s[j] - m);
    l += p;
    for (int c = 0; c < h.d; ++c) out[c] += p * h.vd[j][c];
  }
  for (auto& o : out) o /= l;
  return out;
}

// q as the kernel sees it after quantizing to K's vec_dot type.
std::vector<double> q_as_vec_dot(DType kt, const std::vector<float>& q) {
  const DType vdt = quant_kernels(kt, Isa::Scalar).vec_dot_type;
  std::vector<uint8_t> buf(row_bytes(vdt, static_cast<int64_t>(q.size())));
  std::vector<float> back(q.size());
  quant_kernels(vdt, Isa::Scalar).quantize_row(q.data(), buf.data(), static_cast<int64_t>(q.size()));
  quant_kernels(vdt, Isa::Scalar).dequantize_row(buf.data(), back.data(), static_cast<int64_t>(q.size()));
  return {back.begin(), back.end()};
}

double vmax(const QuantHead& h, int64_t n) {
  double m = 0;
  for (int64_t j = 0; j < n; ++j)
    for (double x : h.vd[j]) m = std::max(m, std::fabs(x));
  return m;
}

// Scores shifted by at most delta move softmax weights by a factor within
// e^{+-2 delta}: the output moves by at most (e^{2 delta} - 1) max|v|.
double softmax_bound(double delta, double vm) { return (std::exp(2 * delta) - 1) * vm; }

struct Pair {
  DType k, v;
};
const Pair kPairs[] = {{DType::Q8_0, DType::Q8_0}, {DType::Q4_0, DType::Q4_0}, {DType::Q4_1, DType::Q4_1},
                       {DType::Q5_0, DType::Q5_0}, {DType::Q5_1, DType::Q5_1}, {DType::BF16, DType::BF16},
                       {DType::Q8_0, DType::F16},  {DType::F16, DType::Q4_0},  {DType::F32, DType::Q8_0},
                       {DType::Q4_0, DType::F32}};

std::string label(const Pair& p, int d, int64_t n) {
  return std::string(dtype_name(p.k)) + "/" + std::string(dtype_name(p.v)) + " d=" + std::to_string(d) +
         " n=" + std::to_string(n);
}

TEST(AttentionQuant, RowTwinMatchesReferenceAndSimdMatchesTwin) {
  uint32_t seed = 1;
  for (const Pair& pr : kPairs)
    for (int d : {64, 128})
      for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{100}}) {
        const QuantHead h(pr.k, pr.v, n, d, seed++);
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd;
        std::vector<float> q(d);
        for (auto& x : q) x = nd(rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        const std::vector<double> qd = q_as_vec_dot(pr.k, q);
        const std::vector<double> want = reference(h, qd, n, scale);
        // Float rounding of the scores: the vec_dot sums d products (integer
        // for block formats, then a float per block): d * eps * sum|k q|.
        double delta = 0;
        for (int64_t j = 0; j < n; ++j) {
          double a = 0;
          for (int c = 0; c < d; ++c) a += std::fabs(h.kd[j][c] * qd[c]);
          delta = std::max(delta, 2 * d * kEps * a * scale);
        }
        const double vm = vmax(h, n);
        // F16 V: ggml keeps the running sum in F16, n roundings of 2^-11 relative.
        const double acc_round = pr.v == DType::F16 ? 2e-3 * static_cast<double>(n) * vm : 1e-5 * vm;
        const double tol = softmax_bound(delta, vm) + acc_round;
        std::vector<float> got(d), simd(d);
        const KvQuantBlocks scalar_rows = quant_rows(h.rows(), Isa::Scalar);
        ref::attend_quant(scalar_rows, n, d, q.data(), scale, got.data());
        for (int c = 0; c < d; ++c) ASSERT_NEAR(got[c], want[c], tol) << label(pr, d, n) << " c=" << c;
        // Through the set: the scalar entry is the twin.
        std::vector<float> via_set(d);
        attention_kernel_set(pr.k, pr.v, AttentionAlgo::Exact, Isa::Scalar)
            .row(h.rows(), n, d, q.data(), scale, via_set.data());
        EXPECT_EQ(via_set, got) << label(pr, d, n);
        const double simd_tol = softmax_bound(delta, vm) + (pr.v == DType::F16 ? acc_round : 1e-6 * vm);
        if (!isa_supported(Isa::Avx2)) continue;
        avx2::attend_quant(quant_rows(h.rows(), Isa::Avx2), n, d, q.data(), scale, simd.data());
        for (int c = 0; c < d; ++c) ASSERT_NEAR(simd[c], got[c], simd_tol) << "avx2 " << label(pr, d, n) << " c=" << c;
        // Through the set: the same kernel, at the AVX-512 level too (attention_set.cpp).
        for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
          if (!isa_supported(isa)) continue;
          attention_kernel_set(pr.k, pr.v, AttentionAlgo::Exact, isa).row(h.rows(), n, d, q.data(), scale, via_set.data());
          EXPECT_EQ(via_set, simd) << isa_name(isa) << " " << label(pr, d, n);
        }
      }
}

TEST(AttentionQuant, TilesMatchReferenceAndSimdTilesMatchTwinBitForBit) {
  uint32_t seed = 500;
  for (const Pair& pr : kPairs)
    for (int d : {64, 128}) {
      const int64_t n = 150;
      const QuantHead h(pr.k, pr.v, n, d, seed++);
      std::mt19937 rng(seed);
      std::normal_distribution<float> nd;
      constexpr int kRows = 5;
      std::vector<std::vector<float>> q(kRows, std::vector<float>(d));
      for (auto& r : q)
        for (auto& x : r) x = nd(rng);
      const int64_t vis[kRows] = {1, 63, 64, 65, 150};
      std::vector<std::vector<float>> a(kRows, std::vector<float>(d)), b = a;
      const float* qp[kRows];
      float *ap[kRows], *bp[kRows];
      for (int r = 0; r < kRows; ++r) {
        qp[r] = q[r].data();
        ap[r] = a[r].data();
        bp[r] = b[r].data();
      }
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      std::vector<float> scratch(tile_scratch_floats(d));
      // Through the set: q rounded to K's vec_dot type, as the row kernels see it.
      attention_kernel_set(pr.k, pr.v, AttentionAlgo::Exact, Isa::Scalar)
          .tile(h.rows(), d, TileRows{qp, ap, vis, kRows}, scale, scratch.data());
      for (int r = 0; r < kRows; ++r) {
        const std::vector<double> qd = q_as_vec_dot(pr.k, q[r]);
        const std::vector<double> want = reference(h, qd, vis[r], scale);
        // F32 q and keys: float rounding of the scores and the polynomial exp.
        const double tol = 1e-4 * vmax(h, vis[r]);
        for (int c = 0; c < d; ++c)
          ASSERT_NEAR(a[r][c], want[c], tol) << label(pr, d, vis[r]) << " row " << r << " c=" << c;
      }
      for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
        if (!isa_supported(isa)) continue;
        attention_kernel_set(pr.k, pr.v, AttentionAlgo::Exact, isa)
            .tile(h.rows(), d, TileRows{qp, bp, vis, kRows}, scale, scratch.data());
        for (int r = 0; r < kRows; ++r) EXPECT_EQ(a[r], b[r]) << isa_name(isa) << " " << label(pr, d, vis[r]) << " row " << r;
      }
    }
}

TEST(AttentionQuant, EveryPairOfKvTypesHasExactKernels) {
  for (DType k : kv_types())
    for (DType v : kv_types()) {
      EXPECT_TRUE(has_attention_kernels(k, v, AttentionAlgo::Exact));
      const AttentionKernelSet& s = attention_kernel_set(k, v, AttentionAlgo::Exact, Isa::Avx2);
      EXPECT_EQ(s.k_type, k);
      EXPECT_EQ(s.v_type, v);
      if (isa_supported(Isa::Avx2)) {  // the AVX2 kernels, not the twin
        EXPECT_NE(s.row, attention_kernel_set(k, v, AttentionAlgo::Exact, Isa::Scalar).row);
      }
      // int8 reads the f16 cache or INT8 (q8_0) K and V; sage the f16 cache, or
      // smoothed block-quantized keys with any V (kv/kv_cache.h).
      const bool f16 = k == DType::F16 && v == DType::F16;
      EXPECT_EQ(has_attention_kernels(k, v, AttentionAlgo::Int8), f16 || (k == DType::Q8_0 && v == DType::Q8_0));
      EXPECT_EQ(has_attention_kernels(k, v, AttentionAlgo::Sage), f16 || traits(k).block_size > 1);
    }
}

}  // namespace
}  // namespace kestrel::kernels
