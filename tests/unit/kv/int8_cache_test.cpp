// attn=int8 over INT8 K and V in the cache (kv=q8_0, K smoothed; the twin is
// kernels::ref::attend_int8_quant): the AVX2 kernel gives the twin's bits when
// the scores are exact in float (the integer P.V and the softmax are the same
// operations), the twin stays within card 2's relative error bar of a
// double-precision attention over the same cache, windowed views read no row
// past their own (the engine's pairs: tests/unit/switches/registry_test.cpp);
// and the GQA group kernels (sage and int8 over a smoothed cache, exact over
// Q8_0 keys) give every head the row kernel's bits, through the kernel table
// and through decode. (An F16 group kernel measured no faster than its rows:
// there the per-key exp and F16 rounding of each head are the cost.)
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
#include "kv/attention_batch.h"
#include "kv/kv_cache.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

using kernels::AttentionAlgo;

// Values k * 2^-4 with integer k in [-127, 127] and 127 reached in every block
// of 32: Q8_0 stores them exactly (its scale is absmax / 127 = 2^-4), so every
// score is a sum of exact products, the same float in any summation order.
std::vector<float> exact_q8_row(int d, std::mt19937& rng) {
  std::uniform_int_distribution<int> u(-127, 127);
  std::vector<float> x(static_cast<size_t>(d));
  for (int c = 0; c < d; ++c) x[c] = static_cast<float>(c % 32 == 5 ? 127 : u(rng)) * 0.0625f;
  return x;
}

std::vector<float> normal_row(int d, std::mt19937& rng, float amp) {
  std::normal_distribution<float> g(0.0f, amp);
  std::vector<float> x(static_cast<size_t>(d));
  for (float& v : x) v = g(rng);
  return x;
}

TEST(Int8Cache, SimdKernelGivesTheTwinsBitsWhenTheScoresAreExact) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU: only the twin runs";
  for (int d : {64, 96, 128}) {
    std::mt19937 rng(static_cast<unsigned>(d));
    const int64_t n_max = 250;
    // Unsmoothed and unrotated, so the keys stay exact (a block mean would not
    // be).
    KvCache c(KvShape{1, 1, d, n_max, 1}, DType::Q8_0, DType::Q8_0, Isa::Scalar, false, false);
    for (int64_t p = 0; p < n_max; ++p) {
      const std::vector<float> k = exact_q8_row(d, rng), v = normal_row(d, rng, 1.0f);
      c.store(0, 0, p, k.data(), v.data());
    }
    c.set_seq_len(0, n_max);
    // q * 0.125 / 16 keeps the scores within a few units: a real softmax.
    std::vector<float> q = exact_q8_row(d, rng);
    for (float& x : q) x *= 1.0f / 64.0f;
    const auto& twin = kernels::attention_kernel_set(DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, Isa::Scalar);
    const auto& simd = kernels::attention_kernel_set(DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, Isa::Avx2);
    ASSERT_NE(twin.row, simd.row);
    std::vector<float> want(d), got(d);
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{17}, int64_t{100}, n_max}) {
      twin.row(head_rows(c.view(0, 0, 0)), n, d, q.data(), 0.125f, want.data());
      simd.row(head_rows(c.view(0, 0, 0)), n, d, q.data(), 0.125f, got.data());
      for (int ch = 0; ch < d; ++ch) ASSERT_EQ(got[ch], want[ch]) << "d " << d << " n " << n << " channel " << ch;
      // A windowed view: blocks of one row, whose neighbours are not read.
      std::vector<int32_t> ids;
      const int64_t first = n / 3;
      const kernels::KvRows w = window_rows(c, c.view(0, 0, 0), first, n - first, ids);
      twin.row(w, n - first, d, q.data(), 0.125f, want.data());
      simd.row(w, n - first, d, q.data(), 0.125f, got.data());
      for (int ch = 0; ch < d; ++ch) ASSERT_EQ(got[ch], want[ch]) << "window d " << d << " n " << n << " " << ch;
    }
  }
}

// Softmax attention over what the cache holds (smoothed K: stored row + mean),
// in double, with q as the integer dot product sees it (rounded to Q8_0).
std::vector<double> cache_attention(const KvCache& c, int64_t n, const std::vector<float>& q, double scale) {
  const int d = static_cast<int>(q.size());
  const auto& q8 = kernels::quant_kernels(DType::Q8_0, Isa::Scalar);
  std::vector<uint8_t> qq(row_bytes(DType::Q8_0, d));
  std::vector<float> qr(d), k(d), v(d);
  q8.quantize_row(q.data(), qq.data(), d);
  q8.dequantize_row(qq.data(), qr.data(), d);
  const KvHeadView view = c.view(0, 0, 0);
  std::vector<double> s(static_cast<size_t>(n)), out(d, 0.0);
  double mx = -1e300, sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t b = view.blocks[j / KvCache::kBlock];
    q8.dequantize_row(
        static_cast<const uint8_t*>(view.k) + b * view.block_stride + (j % KvCache::kBlock) * c.k_row_bytes(), k.data(),
        d);
    const uint16_t* m = view.k_mean + b * view.mean_stride;
    double dot = 0.0;
    for (int ch = 0; ch < d; ++ch) dot += double{qr[ch]} * k[ch] + double{q[ch]} * fp16_to_f32(m[ch]);
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  for (int64_t j = 0; j < n; ++j) {
    const double p = std::exp(s[j] - mx);
    sum += p;
    q8.dequantize_row(static_cast<const uint8_t*>(view.v) + view.blocks[j / KvCache::kBlock] * view.v_block_stride +
                          (j % KvCache::kBlock) * row_bytes(DType::Q8_0, d),
                      v.data(), d);
    for (int ch = 0; ch < d; ++ch) out[ch] += p * v[ch];
  }
  for (double& o : out) o /= sum;
  return out;
}

TEST(Int8Cache, IntegerPvStaysWithinCardTwosBarOfFloatPvOverTheSameCache) {
  // Keys sharing a large bias (Qwen2.5's k_proj has one): the cache smooths
  // them.
  const int d = 64;
  const int64_t n_max = 300;
  std::mt19937 rng(3);
  KvCache c(KvShape{1, 1, d, n_max, 1}, DType::Q8_0, DType::Q8_0, Isa::Scalar, true,
            kernels::smooths_keys(DType::Q8_0, AttentionAlgo::Int8));
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
    if (!isa_supported(isa)) continue;
    const auto& set = kernels::attention_kernel_set(DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, isa);
    for (int64_t n : {int64_t{1}, int64_t{40}, n_max})
      for (unsigned seed : {1u, 2u, 3u}) {
        const std::vector<float> q = normal_row(d, rng, 0.3f * static_cast<float>(seed));
        std::vector<float> out(d);
        attend_head(c, 0, 0, AttentionParams{1, 1, d, 0.125f}, 0, q.data(), n, out.data(), set);
        // sage over the same cache: the same scores and softmax, P.V in float.
        const auto& sage = kernels::attention_kernel_set(DType::Q8_0, DType::Q8_0, AttentionAlgo::Sage, isa);
        std::vector<float> ref(d);
        attend_head(c, 0, 0, AttentionParams{1, 1, d, 0.125f}, 0, q.data(), n, ref.data(), sage);
        double e = 0, nn = 0;
        for (int ch = 0; ch < d; ++ch) {
          e += (out[ch] - ref[ch]) * (out[ch] - ref[ch]);
          nn += double{ref[ch]} * ref[ch];
        }
        // Each weight is rounded to 1/254 of its block's largest at worst.
        EXPECT_LT(std::sqrt(e / nn), 1e-2) << isa_name(isa) << " n " << n << " seed " << seed;
      }
  }
}

TEST(Int8Cache, TheTwinMatchesTheDoublePrecisionAttentionOverAnUnrotatedCache) {
  const int d = 64;
  const int64_t n_max = 200;
  std::mt19937 rng(9);
  KvCache c(KvShape{1, 1, d, n_max, 1}, DType::Q8_0, DType::Q8_0, Isa::Scalar, false, true);
  for (int64_t p = 0; p < n_max; ++p) {
    std::vector<float> k = normal_row(d, rng, 1.0f);
    k[7] += 15.0f;
    const std::vector<float> v = normal_row(d, rng, 1.0f);
    c.store(0, 0, p, k.data(), v.data());
  }
  c.set_seq_len(0, n_max);
  const auto& twin = kernels::attention_kernel_set(DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, Isa::Scalar);
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
    if (n == 1) {
      EXPECT_LT(std::sqrt(e / nn), 1e-5) << "one key: its own value, one weight of 127/127";
    }
  }
}

// Keys with a shared bias, values noise, n_kv heads per position.
void store_biased(KvCache& c, int n, int n_kv, int d, unsigned seed) {
  std::mt19937 rng(seed);
  for (int p = 0; p < n; ++p) {
    std::vector<float> k, v;
    for (int h = 0; h < n_kv; ++h) {
      std::vector<float> kh = normal_row(d, rng, 1.0f), vh = normal_row(d, rng, 1.0f);
      kh[5] += 18.0f;
      k.insert(k.end(), kh.begin(), kh.end());
      v.insert(v.end(), vh.begin(), vh.end());
    }
    c.store(0, 0, p, k.data(), v.data());
  }
  c.set_seq_len(0, n);
}

TEST(GroupKernels, EveryHeadGetsTheRowKernelsBits) {
  struct Pair {
    DType k, v;
    AttentionAlgo algo;
  };
  const Pair pairs[] = {
      {DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8},  {DType::Q8_0, DType::F16, AttentionAlgo::Sage},
      {DType::Q8_0, DType::Q8_0, AttentionAlgo::Sage},  {DType::Q4_0, DType::Q4_1, AttentionAlgo::Sage},
      {DType::Q8_0, DType::Q8_0, AttentionAlgo::Exact}, {DType::Q8_0, DType::F16, AttentionAlgo::Exact}};
  for (const Pair& pr : pairs)
    for (int d : {64, 128})
      for (bool rotate : {false, true}) {
        KvCache c(KvShape{1, 1, d, 128, 1}, pr.k, pr.v, Isa::Scalar, rotate, kernels::smooths_keys(pr.k, pr.algo));
        store_biased(c, 120, 1, d, static_cast<unsigned>(d));
        for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
          if (!isa_supported(isa)) continue;
          const auto& set = kernels::attention_kernel_set(pr.k, pr.v, pr.algo, isa);
          ASSERT_NE(set.group, nullptr);
          std::mt19937 rng(1);
          for (int nq : {1, 7, kernels::kMaxGroup})
            for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{120}}) {
              std::vector<std::vector<float>> q, got(nq, std::vector<float>(d)), want = got;
              const float* qp[kernels::kMaxGroup];
              float* op[kernels::kMaxGroup];
              for (int h = 0; h < nq; ++h) {
                q.push_back(normal_row(d, rng, 0.4f));
                qp[h] = q[h].data();
                op[h] = got[h].data();
              }
              set.group(head_rows(c.view(0, 0, 0)), n, d, qp, nq, 0.125f, op);
              for (int h = 0; h < nq; ++h) {
                set.row(head_rows(c.view(0, 0, 0)), n, d, qp[h], 0.125f, want[h].data());
                for (int ch = 0; ch < d; ++ch)
                  ASSERT_EQ(got[h][ch], want[h][ch])
                      << kernels::attention_algo_name(pr.algo) << " " << dtype_name(pr.k) << "/" << dtype_name(pr.v)
                      << " d " << d << " rot " << rotate << " " << isa_name(isa) << " nq " << nq << " n " << n
                      << " head " << h << " ch " << ch;
              }
            }
        }
      }
}

TEST(GroupKernels, DecodeThroughTheGroupsEqualsOneRowPerHead) {
  // SmolLM2's shape (9 query heads on 3 KV heads: groups split over threads)
  // and Qwen2.5-0.5B's (14 on 2: whole groups of 7); two tokens of one
  // sequence decoded together, as a speculative check would.
  struct Shape {
    int n_head, n_kv;
  };
  for (const Shape sh : {Shape{9, 3}, Shape{14, 2}})
    for (int threads : {1, 2, 3})
      for (AttentionAlgo algo : {AttentionAlgo::Int8, AttentionAlgo::Sage, AttentionAlgo::Exact}) {
        const int d = 64;
        const DType t = DType::Q8_0;
        KvCache c(KvShape{1, sh.n_kv, d, 256, 1}, t, t, best_isa(), true, kernels::smooths_keys(t, algo));
        store_biased(c, 200, sh.n_kv, d, 4);
        const auto& set = kernels::attention_kernel_set(t, t, algo, best_isa());
        ASSERT_NE(set.group, nullptr);
        const AttentionParams ap{sh.n_head, sh.n_kv, d, 0.125f};
        std::mt19937 rng(2);
        std::vector<float> q = normal_row(2 * sh.n_head * d, rng, 0.4f), out(q.size()), want(q.size());
        const int32_t seq[2] = {0, 0}, pos[2] = {150, 199};
        ThreadPool pool(threads);
        attend_batch(c, 0, ap, AttentionBatch{2, seq, pos, q.data(), out.data()}, pool, set);
        for (int t = 0; t < 2; ++t)
          for (int h = 0; h < sh.n_head; ++h) {
            const size_t at = (static_cast<size_t>(t) * sh.n_head + h) * d;
            attend_head(c, 0, 0, ap, h, &q[at], pos[t] + 1, &want[at], set);
          }
        for (size_t i = 0; i < out.size(); ++i)
          ASSERT_EQ(out[i], want[i]) << sh.n_head << "/" << sh.n_kv << " threads " << threads << " at " << i;
      }
}

}  // namespace
}  // namespace kestrel
