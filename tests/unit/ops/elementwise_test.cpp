#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/activation.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace kestrel {

TEST(RmsNorm, MatchesDoubleFormula) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int n : {1, 7, 64, 576, 4099}) {
    std::vector<float> x(n), w(n), out(n);
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = nd(rng);
    rms_norm_row(x.data(), w.data(), 1e-5f, n, out.data());
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double scale = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; ++i) ASSERT_NEAR(out[i], x[i] * scale * w[i], 1e-5 * (1 + std::fabs(x[i] * scale * w[i])));
  }
}

TEST(Softmax, SumsToOneAndMatchesDouble) {
  std::vector<float> x = {1.0f, -2.0f, 3.5f, 3.5f, -INFINITY, 0.0f, 80.0f};
  std::vector<float> y = x;
  softmax_inplace(y.data(), y.size());
  double max = 80.0, sum = 0;
  for (float v : x) sum += std::exp(double(v) - max);
  double total = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(y[i], std::exp(double(x[i]) - max) / sum, 1e-7);
    total += y[i];
  }
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_EQ(y[4], 0.0f);
}

TEST(Swiglu, MatchesClosedForm) {
  std::vector<float> g = {-10.0f, -1.0f, 0.0f, 0.5f, 3.0f, 20.0f}, u = {1.0f, 2.0f, 3.0f, -4.0f, 5.0f, 0.25f};
  std::vector<float> out = g;
  swiglu_inplace(out.data(), u.data(), g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const double s = g[i] / (1.0 + std::exp(-double(g[i])));
    EXPECT_NEAR(out[i], s * u[i], 1e-5 * (1 + std::fabs(s * u[i])));
  }
}

// RoPE against the closed form theta_i = p * base^(-2i/n_rot), for both layouts.
TEST(Rope, MatchesClosedFormBothLayouts) {
  const int head_dim = 64, n_heads = 3;
  for (RopeLayout layout : {RopeLayout::Norm, RopeLayout::Neox}) {
    RopeParams p;
    p.layout = layout;
    p.n_rot = 48;  // partial rotation: the last 16 dims stay as they are
    p.freq_base = 100000.0f;
    for (int64_t pos : {0, 1, 17, 511, 4000}) {
      std::vector<float> c(p.n_rot / 2), s(p.n_rot / 2);
      rope_angles(p, pos, c.data(), s.data());
      std::vector<float> x(n_heads * head_dim);
      for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * i) + 0.1f * i / x.size();
      std::vector<float> y = x;
      rope_apply(p, c.data(), s.data(), y.data(), n_heads, head_dim);
      for (int h = 0; h < n_heads; ++h) {
        const float* a = &x[h * head_dim];
        const float* b = &y[h * head_dim];
        for (int i = 0; i < p.n_rot / 2; ++i) {
          const double theta = pos * std::pow(double(p.freq_base), -2.0 * i / p.n_rot);
          const int i0 = layout == RopeLayout::Norm ? 2 * i : i;
          const int i1 = layout == RopeLayout::Norm ? 2 * i + 1 : i + p.n_rot / 2;
          const double e0 = a[i0] * std::cos(theta) - a[i1] * std::sin(theta);
          const double e1 = a[i0] * std::sin(theta) + a[i1] * std::cos(theta);
          // Float angle error grows with pos (ggml builds the powers by repeated products).
          const double tol = 1e-5 + 2e-7 * pos;
          ASSERT_NEAR(b[i0], e0, tol) << "pos " << pos << " i " << i;
          ASSERT_NEAR(b[i1], e1, tol) << "pos " << pos << " i " << i;
        }
        for (int i = p.n_rot; i < head_dim; ++i) ASSERT_EQ(b[i], a[i]);
      }
    }
  }
}

TEST(Rope, LinearScalingAndFreqFactorsScaleTheAngle) {
  RopeParams p;
  p.n_rot = 8;
  p.freq_scale = 0.25f;
  p.freq_factors = {1.0f, 2.0f, 4.0f, 8.0f};
  std::vector<float> c(4), s(4);
  rope_angles(p, 100, c.data(), s.data());
  for (int i = 0; i < 4; ++i) {
    const double theta = 0.25 * 100 * std::pow(10000.0, -2.0 * i / 8) / p.freq_factors[i];
    EXPECT_NEAR(c[i], std::cos(theta), 1e-5);
    EXPECT_NEAR(s[i], std::sin(theta), 1e-5);
  }
}

}  // namespace kestrel
