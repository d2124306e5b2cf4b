#include "kv/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kv/attention_kernels.h"

namespace kestrel {
namespace {

// Plain double-precision causal attention for one query head.
std::vector<double> reference(const std::vector<float>& q, const std::vector<std::vector<float>>& k,
                              const std::vector<std::vector<float>>& v, int d, double scale) {
  std::vector<double> s(k.size());
  double max = -1e300;
  for (size_t j = 0; j < k.size(); ++j) {
    double acc = 0;
    for (int i = 0; i < d; ++i) acc += double(q[i]) * k[j][i];
    s[j] = acc * scale;
    max = std::max(max, s[j]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - max));
  std::vector<double> out(d, 0.0);
  for (size_t j = 0; j < k.size(); ++j)
    for (int i = 0; i < d; ++i) out[i] += s[j] / sum * v[j][i];
  return out;
}

}  // namespace

TEST(Attention, GroupedQueryMatchesDoubleReference) {
  const int n_head = 6, n_kv = 2, d = 32, n_pos = 37;
  for (KvType type : {KvType::F32, KvType::F16}) {
    KvCache cache(KvShape{2, n_kv, d, 64, 2}, type);
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    // [pos][kv_head][d], stored in layer 1, sequence 1.
    std::vector<std::vector<std::vector<float>>> K(n_pos), V(n_pos);
    for (int p = 0; p < n_pos; ++p) {
      std::vector<float> kr(n_kv * d), vr(n_kv * d);
      for (auto& x : kr) x = nd(rng);
      for (auto& x : vr) x = nd(rng);
      if (type == KvType::F16) {  // the reference sees what the cache can hold
        for (auto& x : kr) x = fp16_to_f32(f32_to_fp16(x));
        for (auto& x : vr) x = fp16_to_f32(f32_to_fp16(x));
      }
      cache.store(1, 1, p, kr.data(), vr.data());
      for (int h = 0; h < n_kv; ++h) {
        K[p].emplace_back(kr.begin() + h * d, kr.begin() + (h + 1) * d);
        V[p].emplace_back(vr.begin() + h * d, vr.begin() + (h + 1) * d);
      }
    }
    AttentionParams ap{n_head, n_kv, d, 1.0f / std::sqrt(float(d))};
    std::vector<float> out(d);
    for (int h = 0; h < n_head; ++h) {
      std::vector<float> q(d);
      for (auto& x : q) x = nd(rng);
      for (int visible : {1, 5, n_pos}) {
        attend_head(cache, 1, 1, ap, h, q.data(), visible, out.data(), best_isa());
        std::vector<std::vector<float>> kk, vv;
        for (int p = 0; p < visible; ++p) {
          kk.push_back(K[p][h / (n_head / n_kv)]);
          vv.push_back(V[p][h / (n_head / n_kv)]);
        }
        std::vector<float> qr = q;
        if (type == KvType::F16)
          for (auto& x : qr) x = fp16_to_f32(f32_to_fp16(x));
        const auto ref = reference(qr, kk, vv, d, ap.scale);
        // An F16 cache keeps the running V sum in F16 (as llama.cpp does): each of
        // the `visible` updates may round by 2^-11 relative.
        const double tol = type == KvType::F16 ? 2e-3 * visible : 2e-5;
        for (int i = 0; i < d; ++i) ASSERT_NEAR(out[i], ref[i], tol) << "head " << h << " visible " << visible;
      }
    }
  }
}

TEST(KvCache, RejectsPositionsOutsideTheContext) {
  KvCache cache(KvShape{1, 1, 4, 8, 1}, KvType::F16);
  std::vector<float> row(4, 1.0f);
  EXPECT_THROW(cache.store(0, 0, 8, row.data(), row.data()), Error);
  EXPECT_THROW(cache.set_seq_len(0, 9), Error);
  EXPECT_THROW(KvCache(KvShape{0, 1, 4, 8, 1}, KvType::F32), Error);
  EXPECT_EQ(cache.bytes(), 2u * 8 * 4 * 2);
}

}  // namespace kestrel

namespace kestrel {

// The SIMD kernels sum in the scalar twin's order: identical bits, any head size.
TEST(AttentionKernels, SimdEqualsScalarBitForBit) {
  if (!isa_supported(Isa::Avx512)) GTEST_SKIP() << "no AVX-512";
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int d : {16, 48, 64, 80, 128, 136}) {
    for (int64_t n : {1, 2, 7, 64, 300}) {
      std::vector<float> k(n * d), v(n * d), q(d);
      for (auto& x : k) x = nd(rng);
      for (auto& x : v) x = nd(rng);
      for (auto& x : q) x = nd(rng);
      std::vector<uint16_t> k16(k.size()), v16(v.size());
      for (size_t i = 0; i < k.size(); ++i) {
        k16[i] = f32_to_fp16(k[i]);
        v16[i] = f32_to_fp16(v[i]);
      }
      const float scale = 1.0f / std::sqrt(float(d));
      std::vector<float> a(d), b(d), c(d), e(d);
      kv::ref::attend_f16(k16.data(), v16.data(), n, d, q.data(), scale, a.data());
      kv::avx512::attend_f16(k16.data(), v16.data(), n, d, q.data(), scale, b.data());
      kv::ref::attend_f32(k.data(), v.data(), n, d, q.data(), scale, c.data());
      kv::avx512::attend_f32(k.data(), v.data(), n, d, q.data(), scale, e.data());
      for (int i = 0; i < d; ++i) {
        ASSERT_EQ(a[i], b[i]) << "f16 d " << d << " n " << n << " i " << i;
        ASSERT_EQ(c[i], e[i]) << "f32 d " << d << " n " << n << " i " << i;
      }
    }
  }
}

}  // namespace kestrel
