#include "kv/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"

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
    std::vector<float> scores(n_pos), out(d);
    for (int h = 0; h < n_head; ++h) {
      std::vector<float> q(d);
      for (auto& x : q) x = nd(rng);
      for (int visible : {1, 5, n_pos}) {
        attend_head(cache, 1, 1, ap, h, q.data(), visible, out.data(), scores.data());
        std::vector<std::vector<float>> kk, vv;
        for (int p = 0; p < visible; ++p) {
          kk.push_back(K[p][h / (n_head / n_kv)]);
          vv.push_back(V[p][h / (n_head / n_kv)]);
        }
        std::vector<float> qr = q;
        if (type == KvType::F16)
          for (auto& x : qr) x = fp16_to_f32(f32_to_fp16(x));
        const auto ref = reference(qr, kk, vv, d, ap.scale);
        for (int i = 0; i < d; ++i) ASSERT_NEAR(out[i], ref[i], 2e-5) << "head " << h << " visible " << visible;
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
