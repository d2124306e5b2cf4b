// attn=int8 over INT8 K and V in the cache (kv=q8_0, K smoothed; the twin is
// kernels::ref::attend_int8_quant): the AVX2 kernel gives the twin's bits when
// the scores are exact in float (the integer P.V and the softmax are the same
// operations), the twin stays within card 2's relative error bar of a
// double-precision attention over the same cache, windowed views read no row
// past their own (the engine's pairs: tests/unit/switches/registry_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention_set.h"
#include "kernels/quant_kernels.h"
#include "kv/attention.h"
#include "kv/kv_cache.h"

namespace kestrel {
namespace {

using kernels::AttentionAlgo;

// Values k * 2^-4 with integer k in [-127, 127] and 127 reached in every block
// of 32: Q8_0 stores them exactly (its scale is absmax / 127 = 2^-4), so every
// score is a sum of exact products, the same float in any summation order.
std::vector<float> exact_q8_row(int d, std::mt19937 &rng) {
  std::uniform_int_distribution<int> u(-127, 127);
  std::vector<float> x(static_cast<size_t>(d));
  for (int c = 0; c < d; ++c)
    x[c] = static_cast<float>(c % 32 == 5 ? 127 : u(rng)) * 0.0625f;
  return x;
}

std::vector<float> normal_row(int d, std::mt19937 &rng, float amp) {
  std::normal_distribution<float> g(0.0f, amp);
  std::vector<float> x(static_cast<size_t>(d));
  for (float &v : x)
    v = g(rng);
  return x;
}

TEST(Int8Cache, SimdKernelGivesTheTwinsBitsWhenTheScoresAreExact) {
  if (!isa_supported(Isa::Avx2))
    GTEST_SKIP() << "no AVX2 on this CPU: only the twin runs";
  for (int d : {64, 96, 128}) {
    std::mt19937 rng(static_cast<unsigned>(d));
    const int64_t n_max = 250;
    // Unsmoothed and unrotated, so the keys stay exact (a block mean would not
    // be).
    KvCache c(KvShape{1, 1, d, n_max, 1}, DType::Q8_0, DType::Q8_0, Isa::Scalar,
              false, false);
    for (int64_t p = 0; p < n_max; ++p) {
      const std::vector<float> k = exact_q8_row(d, rng),
                               v = normal_row(d, rng, 1.0f);
      c.store(0, 0, p, k.data(), v.data());
    }
    c.set_seq_len(0, n_max);
    // q * 0.125 / 16 keeps the scores within a few units: a real softmax.
    std::vector<float> q = exact_q8_row(d, rng);
    for (float &x : q)
      x *= 1.0f / 64.0f;
    const auto &twin = kernels::attention_kernel_set(
        DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, Isa::Scalar);
    const auto &simd = kernels::attention_kernel_set(
        DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, Isa::Avx2);
    ASSERT_NE(twin.row, simd.row);
    std::vector<float> want(d), got(d);
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{17},
                      int64_t{100}, n_max}) {
      twin.row(head_rows(c.view(0, 0, 0)), n, d, q.data(), 0.125f, want.data());
      simd.row(head_rows(c.view(0, 0, 0)), n, d, q.data(), 0.125f, got.data());
      for (int ch = 0; ch < d; ++ch)
        ASSERT_EQ(got[ch], want[ch])
            << "d " << d << " n " << n << " channel " << ch;
      // A windowed view: blocks of one row, whose neighbours are not read.
      std::vector<int32_t> ids;
      const int64_t first = n / 3;
      const kernels::KvRows w =
          window_rows(c, c.view(0, 0, 0), first, n - first, ids);
      twin.row(w, n - first, d, q.data(), 0.125f, want.data());
      simd.row(w, n - first, d, q.data(), 0.125f, got.data());
      for (int ch = 0; ch < d; ++ch)
        ASSERT_EQ(got[ch], want[ch])
            << "window d " << d << " n " << n << " " << ch;
    }
  }
}

// Softmax attention over what the cache holds (smoothed K: stored row + mean),
// in double, with q as the integer dot product sees it (rounded to Q8_0).
std::vector<double> cache_attention(const KvCache &c, int64_t n,
                                    const std::vector<float> &q, double scale) {
  const int d = static_cast<int>(q.size());
  const auto &q8 = kernels::quant_kernels(DType::Q8_0, Isa::Scalar);
  std::vector<uint8_t> qq(row_bytes(DType::Q8_0, d));
  std::vector<float> qr(d), k(d), v(d);
  q8.quantize_row(q.data(), qq.data(), d);
  q8.dequantize_row(qq.data(), qr.data(), d);
  const KvHeadView view = c.view(0, 0, 0);
  std::vector<double> s(static_cast<size_t>(n)), out(d, 0.0);
  double mx = -1e300, sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t b = view.blocks[j / KvCache::kBlock];
    q8.dequantize_row(static_cast<const uint8_t *>(view.k) +
                          b * view.block_stride +
                          (j % KvCache::kBlock) * c.k_row_bytes(),
                      k.data(), d);
    const uint16_t *m = view.k_mean + b * view.mean_stride;
    double dot = 0.0;
    for (int ch = 0; ch < d; ++ch)
      dot += double{qr[ch]} * k[ch] + double{q[ch]} * fp16_to_f32(m[ch]);
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  for (int64_t j = 0; j < n; ++j) {
    const double p = std::exp(s[j] - mx);
    sum += p;
    q8.dequantize_row(static_cast<const uint8_t *>(view.v) +
                          view.blocks[j / KvCache::kBlock] *
                              view.v_block_stride +
                          (j % KvCache::kBlock) * row_bytes(DType::Q8_0, d),
                      v.data(), d);
    for (int ch = 0; ch < d; ++ch)
      out[ch] += p * v[ch];
  }
  for (double &o : out)
    o /= sum;
  return out;
}

TEST(Int8Cache, IntegerPvStaysWithinCardTwosBarOfFloatPvOverTheSameCache) {
  // Keys sharing a large bias (Qwen2.5's k_proj has one): the cache smooths
  // them.
  const int d = 64;
  const int64_t n_max = 300;
  std::mt19937 rng(3);
  KvCache c(KvShape{1, 1, d, n_max, 1}, DType::Q8_0, DType::Q8_0, Isa::Scalar,
            true, kernels::smooths_keys(DType::Q8_0, AttentionAlgo::Int8));
  ASSERT_TRUE(c.smooths_k());
  for (int64_t p = 0; p < n_max; ++p) {
    std::vector<float> k = normal_row(d, rng, 1.0f);
    k[3] += 20.0f;
    k[40] -= 12.0f;
    const std::vector<float> v = normal_row(d, rng, 1.0f);
    c.store(0, 0, p, k.data(), v.data());
  }
  c.set_seq_len(0, n_max);
  for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
    if (!isa_supported(isa))
      continue;
    const auto &set = kernels::attention_kernel_set(DType::Q8_0, DType::Q8_0,
                                                    AttentionAlgo::Int8, isa);
    for (int64_t n : {int64_t{1}, int64_t{40}, n_max})
      for (unsigned seed : {1u, 2u, 3u}) {
        const std::vector<float> q =
            normal_row(d, rng, 0.3f * static_cast<float>(seed));
        std::vector<float> out(d);
        attend_head(c, 0, 0, AttentionParams{1, 1, d, 0.125f}, 0, q.data(), n,
                    out.data(), set);
        // sage over the same cache: the same scores and softmax, P.V in float.
        const auto &sage = kernels::attention_kernel_set(
            DType::Q8_0, DType::Q8_0, AttentionAlgo::Sage, isa);
        std::vector<float> ref(d);
        attend_head(c, 0, 0, AttentionParams{1, 1, d, 0.125f}, 0, q.data(), n,
                    ref.data(), sage);
        double e = 0, nn = 0;
        for (int ch = 0; ch < d; ++ch) {
          e += (out[ch] - ref[ch]) * (out[ch] - ref[ch]);
          nn += double{ref[ch]} * ref[ch];
        }
        // Each weight is rounded to 1/254 of its block's largest at worst.
        EXPECT_LT(std::sqrt(e / nn), 1e-2)
            << isa_name(isa) << " n " << n << " seed " << seed;
      }
  }
}

TEST(Int8Cache, TheTwinMatchesTheDoublePrecisionAttentionOverAnUnrotatedCache) {
  const int d = 64;
  const int64_t n_max = 200;
  std::mt19937 rng(9);
  KvCache c(KvShape{1, 1, d, n_max, 1}, DType::Q8_0, DType::Q8_0, Isa::Scalar,
            false, true);
  for (int64_t p = 0; p < n_max; ++p) {
    std::vector<float> k = normal_row(d, rng, 1.0f);
    k[7] += 15.0f;
    const std::vector<float> v = normal_row(d, rng, 1.0f);
    c.store(0, 0, p, k.data(), v.data());
  }
  c.set_seq_len(0, n_max);
  const auto &twin = kernels::attention_kernel_set(
      DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, Isa::Scalar);
  for (int64_t n : {int64_t{1}, int64_t{16}, int64_t{33}, n_max}) {
    const std::vector<float> q = normal_row(d, rng, 0.5f);
    std::vector<float> out(d);
    twin.row(head_rows(c.view(0, 0, 0)), n, d, q.data(), 0.125f, out.data());
    const std::vector<double> want = cache_attention(c, n, q, 0.125);
    double e = 0, nn = 0;
    for (int ch = 0; ch < d; ++ch) {
      e += (out[ch] - want[ch]) * (out[ch] - want[ch]);
      nn += want[ch] * want[ch];
    }
    EXPECT_LT(std::sqrt(e / nn), 1e-2) << "n " << n;
    if (n == 1)
      EXPECT_LT(std::sqrt(e / nn), 1e-5)
          << "one key: its own value, one weight of 127/127";
  }
}

} // namespace
} // namespace kestrel
