// Smoothed keys (kv/kv_cache.h, `attn=sage` over a block-quantized K): the
// stored rows are k - m_b and the attention adds q . m_b back per block. Checked
// against closed forms and a double-precision attention: the reconstruction
// bound of each key, the means the cache picks, copy-on-write of the means, the
// windowed view giving the same bits, and what smoothing buys on keys that
// share a large bias (Qwen2.5's k_proj bias is such a case).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/attention_set.h"
#include "kernels/quant_kernels.h"
#include "kv/attention.h"
#include "kv/kv_cache.h"

namespace kestrel {
namespace {

using kernels::AttentionAlgo;
constexpr int kB = KvCache::kBlock;

// Keys that share a bias of `bias` in a few channels, plus unit noise; values noise.
struct Tokens {
  int d, n_head;
  std::vector<float> k, v;  // [n][n_head * d]
};

Tokens biased_tokens(int n, int n_head, int d, float bias, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  Tokens t{d, n_head, std::vector<float>(static_cast<size_t>(n) * n_head * d),
           std::vector<float>(static_cast<size_t>(n) * n_head * d)};
  for (int i = 0; i < n; ++i)
    for (int h = 0; h < n_head; ++h)
      for (int c = 0; c < d; ++c) {
        const size_t at = (static_cast<size_t>(i) * n_head + h) * d + c;
        t.k[at] = g(rng) + (c % 16 == 3 ? bias : 0.0f) + (c == 7 ? -0.5f * bias : 0.0f);
        t.v[at] = g(rng);
      }
  return t;
}

void store_all(KvCache& c, int seq, const Tokens& t, int64_t from, int64_t to) {
  const size_t row = static_cast<size_t>(t.n_head) * t.d;
  for (int64_t p = from; p < to; ++p) c.store(0, seq, p, &t.k[p * row], &t.v[p * row]);
  c.set_seq_len(seq, to);
}

// Softmax attention of q over keys [0, n) of head h, in double.
std::vector<double> exact_attention(const Tokens& t, int h, int64_t n, const std::vector<float>& q, double scale) {
  std::vector<double> s(static_cast<size_t>(n)), out(static_cast<size_t>(t.d), 0.0);
  double mx = -1e300, sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    double dot = 0.0;
    for (int c = 0; c < t.d; ++c) dot += double{q[c]} * t.k[(j * t.n_head + h) * t.d + c];
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  for (int64_t j = 0; j < n; ++j) {
    const double p = std::exp(s[j] - mx);
    sum += p;
    for (int c = 0; c < t.d; ++c) out[c] += p * t.v[(j * t.n_head + h) * t.d + c];
  }
  for (double& o : out) o /= sum;
  return out;
}

double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double e = 0.0, n = 0.0;
  for (size_t c = 0; c < want.size(); ++c) {
    e += (got[c] - want[c]) * (got[c] - want[c]);
    n += want[c] * want[c];
  }
  return std::sqrt(e / n);
}

std::vector<float> random_q(int d, unsigned seed, float amp) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, amp);
  std::vector<float> q(static_cast<size_t>(d));
  for (float& x : q) x = g(rng);
  return q;
}

KvCache make_cache(DType k, bool smooth, int64_t n_ctx = 256, int n_head = 2, bool rotate = false) {
  return KvCache(KvShape{1, n_head, 64, n_ctx, 2}, k, DType::F16, Isa::Scalar, rotate, smooth);
}

}  // namespace

TEST(SmoothedKeys, EveryKeyIsItsBlockMeanPlusTheStoredRowWithinTheFormatsRounding) {
  const Tokens t = biased_tokens(80, 2, 64, 40.0f, 1);
  KvCache c = make_cache(DType::Q8_0, true);
  store_all(c, 0, t, 0, 80);
  const auto& deq = kernels::quant_kernels(DType::Q8_0, Isa::Scalar).dequantize_row;
  std::vector<float> row(64);
  for (int h = 0; h < 2; ++h) {
    const KvHeadView view = c.view(0, 0, h);
    ASSERT_NE(view.k_mean, nullptr);
    for (int64_t p = 0; p < 80; ++p) {
      const int32_t b = view.blocks[p / kB];
      const uint16_t* m = view.k_mean + b * view.mean_stride;
      deq(static_cast<const uint8_t*>(view.k) + b * view.block_stride + (p % kB) * c.k_row_bytes(), row.data(), 64);
      // q8_0 rounds each value of a 32-value block to half its step absmax/127,
      // and stores the step in F16 (relative error 2^-11, times |q| <= 127).
      for (int c0 = 0; c0 < 64; c0 += 32) {
        float amax = 0.0f;
        for (int c1 = c0; c1 < c0 + 32; ++c1)
          amax = std::max(amax, std::fabs(t.k[(p * 2 + h) * 64 + c1] - fp16_to_f32(m[c1])));
        for (int c1 = c0; c1 < c0 + 32; ++c1)
          EXPECT_NEAR(fp16_to_f32(m[c1]) + row[c1], t.k[(p * 2 + h) * 64 + c1], amax / 127.0f * (0.5f + 127.0f / 2048.0f) + 1e-6f)
              << "pos " << p << " channel " << c1;
      }
    }
  }
}

TEST(SmoothedKeys, TheFirstBlockIsSmoothedByTheFirstKeyAndEveryLaterOneByThePreviousBlocksMean) {
  const Tokens t = biased_tokens(48, 1, 64, 40.0f, 2);
  KvCache c = make_cache(DType::Q8_0, true, 256, 1);
  store_all(c, 0, t, 0, 48);
  const KvHeadView view = c.view(0, 0, 0);
  const uint16_t* m0 = view.k_mean + view.blocks[0] * view.mean_stride;
  const uint16_t* m1 = view.k_mean + view.blocks[1] * view.mean_stride;
  for (int ch = 0; ch < 64; ++ch) {
    EXPECT_EQ(m0[ch], f32_to_fp16(t.k[ch])) << ch;
    double mean = 0.0;  // of block 0's keys; the cache averages them as stored (within q8_0's rounding)
    for (int j = 0; j < kB; ++j) mean += t.k[j * 64 + ch];
    EXPECT_NEAR(fp16_to_f32(m1[ch]), mean / kB, 0.05) << ch;
  }
}

TEST(SmoothedKeys, ABiasAllKeysShareCostsAFourBitKNothingOnceSmoothed) {
  // 4-bit keys with a bias of 40 in some channels: unsmoothed, q4_0's step
  // (absmax / 8) swamps the unit-size differences between keys; smoothed, the
  // step is set by the differences alone.
  const Tokens t = biased_tokens(200, 2, 64, 40.0f, 3);
  const std::vector<float> q = random_q(64, 4, 0.35f);
  const float scale = 0.125f;
  for (bool rotate : {false, true}) {
    double err[2];
    for (bool smooth : {false, true}) {
      KvCache c = make_cache(DType::Q4_0, smooth, 256, 2, rotate);
      store_all(c, 0, t, 0, 200);
      const auto& set = kernels::attention_kernel_set(DType::Q4_0, DType::F16,
                                                      smooth ? AttentionAlgo::Sage : AttentionAlgo::Exact, Isa::Scalar);
      std::vector<float> out(64);
      double worst = 0.0;
      for (int h = 0; h < 2; ++h) {
        attend_head(c, 0, 0, AttentionParams{2, 2, 64, scale}, h, q.data(), 200, out.data(), set);
        worst = std::max(worst, rel_error(out, exact_attention(t, h, 200, q, scale)));
      }
      err[smooth] = worst;
    }
    std::cout << (rotate ? "rotated" : "unrotated") << " q4_0 K: relative error of the output " << err[0]
              << " unsmoothed, " << err[1] << " smoothed\n";
    EXPECT_LT(err[1] * 4.0, err[0]) << "rotate " << rotate;
    EXPECT_LT(err[1], 0.1) << "rotate " << rotate;
  }
}

// What the kernels must compute from the cache's contents, in double: a row
// scores q8(q) . r_j + q . m_b (r_j the stored row, q8(q) q rounded to Q8_0 as
// the integer dot product sees it, the mean term in float); a tile sees
// q8(q) . (r_j + m_b) (it rounds q first, then multiplies gathered keys).
std::vector<double> cache_attention(const KvCache& c, int h, int64_t n, const std::vector<float>& q, double scale,
                                    bool tile) {
  const int d = 64;
  const auto& q8 = kernels::quant_kernels(DType::Q8_0, Isa::Scalar);
  std::vector<uint8_t> qq(row_bytes(DType::Q8_0, d));
  std::vector<float> qr(d), r(d);
  q8.quantize_row(q.data(), qq.data(), d);
  q8.dequantize_row(qq.data(), qr.data(), d);
  const KvHeadView view = c.view(0, 0, h);
  std::vector<double> s(static_cast<size_t>(n)), out(d, 0.0);
  double mx = -1e300, sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t b = view.blocks[j / kB];
    q8.dequantize_row(static_cast<const uint8_t*>(view.k) + b * view.block_stride + (j % kB) * c.k_row_bytes(),
                      r.data(), d);
    const uint16_t* m = view.k_mean + b * view.mean_stride;
    double dot = 0.0;
    for (int ch = 0; ch < d; ++ch)
      dot += tile ? double{qr[ch]} * (double{r[ch]} + fp16_to_f32(m[ch]))
                  : double{qr[ch]} * r[ch] + double{q[ch]} * fp16_to_f32(m[ch]);
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  for (int64_t j = 0; j < n; ++j) {
    const double p = std::exp(s[j] - mx);
    sum += p;
    const float* v = reinterpret_cast<const float*>(static_cast<const uint8_t*>(view.v) +
                                                    view.blocks[j / kB] * view.v_block_stride) +
                     (j % kB) * d;
    for (int ch = 0; ch < d; ++ch) out[ch] += p * v[ch];
  }
  for (double& o : out) o /= sum;
  return out;
}

TEST(SmoothedKeys, EveryIsaAndTheTilesComputeTheirDoublePrecisionReference) {
  // V in F32, so the only differences left are float rounding: a small bound.
  const Tokens t = biased_tokens(150, 2, 64, 20.0f, 5);
  KvCache c(KvShape{1, 2, 64, 256, 1}, DType::Q8_0, DType::F32, Isa::Scalar, false, true);
  store_all(c, 0, t, 0, 150);
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) {
      GTEST_LOG_(INFO) << "no " << isa_name(isa) << " on this CPU: its kernels are not checked";
      continue;
    }
    const auto& set = kernels::attention_kernel_set(DType::Q8_0, DType::F32, AttentionAlgo::Sage, isa);
    for (int h = 0; h < 2; ++h) {
      for (int64_t n : {1, 17, 150}) {
        const std::vector<float> q = random_q(64, static_cast<unsigned>(n), 0.3f);
        std::vector<float> out(64);
        attend_head(c, 0, 0, AttentionParams{2, 2, 64, 0.125f}, h, q.data(), n, out.data(), set);
        EXPECT_LT(rel_error(out, cache_attention(c, h, n, q, 0.125, false)), 1e-5) << isa_name(isa) << " n " << n;
        // And the whole path against the keys before quantization: q8_0's cost.
        EXPECT_LT(rel_error(out, exact_attention(t, h, n, q, 0.125)), 5e-3) << isa_name(isa) << " n " << n;
      }
      // A tile of 8 query rows seeing 143..150 keys.
      std::vector<std::vector<float>> qs, outs(8, std::vector<float>(64));
      const float* qp[8];
      float* op[8];
      int64_t vis[8];
      for (int r = 0; r < 8; ++r) {
        qs.push_back(random_q(64, 100 + r, 0.3f));
        qp[r] = qs[r].data();
        op[r] = outs[r].data();
        vis[r] = 143 + r;
      }
      std::vector<float> scratch(kernels::tile_scratch_floats(64));
      set.tile(head_rows(c.view(0, 0, h)), 64, kernels::TileRows{qp, op, vis, 8}, 0.125f, scratch.data());
      for (int r = 0; r < 8; ++r)
        EXPECT_LT(rel_error(outs[r], cache_attention(c, h, vis[r], qs[r], 0.125, true)), 1e-5)
            << isa_name(isa) << " row " << r;
    }
  }
}

TEST(SmoothedKeys, TheSimdDecodeKernelsFollowTheScalarTwinForEveryKAndVType) {
  // The same operations but the format kernels' dot products, which sum in
  // another order: within float rounding of the twin.
  const Tokens t = biased_tokens(100, 1, 64, 20.0f, 12);
  const std::vector<float> q = random_q(64, 13, 0.3f);
  for (DType k : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1})
    for (DType v : {DType::F16, DType::Q8_0, DType::Q4_0}) {
      KvCache c(KvShape{1, 1, 64, 128, 1}, k, v, Isa::Scalar, true, true);
      store_all(c, 0, t, 0, 100);
      const auto& twin = kernels::attention_kernel_set(k, v, AttentionAlgo::Sage, Isa::Scalar);
      std::vector<float> want(64), got(64);
      twin.row(head_rows(c.view(0, 0, 0)), 100, 64, q.data(), 0.125f, want.data());
      for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
        if (!isa_supported(isa)) continue;
        const auto& set = kernels::attention_kernel_set(k, v, AttentionAlgo::Sage, isa);
        EXPECT_NE(set.row, twin.row) << isa_name(isa);
        set.row(head_rows(c.view(0, 0, 0)), 100, 64, q.data(), 0.125f, got.data());
        for (int ch = 0; ch < 64; ++ch)
          EXPECT_NEAR(got[ch], want[ch], 1e-5f * (1.0f + std::fabs(want[ch])))
              << dtype_name(k) << "/" << dtype_name(v) << " " << isa_name(isa) << " channel " << ch;
      }
    }
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU: only the twin ran";
}

TEST(SmoothedKeys, AWindowedViewFindsEveryRowsMean) {
  // One row per block (kv/attention.h window_rows): the means are found from
  // row ids. The softmax then rescales per row instead of per 16 rows, so the
  // results agree to float rounding, not bit for bit.
  const Tokens t = biased_tokens(70, 1, 64, 20.0f, 6);
  KvCache c = make_cache(DType::Q8_0, true, 256, 1);
  store_all(c, 0, t, 0, 70);
  const auto& set = kernels::attention_kernel_set(DType::Q8_0, DType::F16, AttentionAlgo::Sage, best_isa());
  const std::vector<float> q = random_q(64, 7, 0.3f);
  std::vector<float> a(64), b(64);
  std::vector<int32_t> ids;
  const KvHeadView view = c.view(0, 0, 0);
  set.row(head_rows(view), 70, 64, q.data(), 0.125f, a.data());
  set.row(window_rows(c, view, 0, 70, ids), 70, 64, q.data(), 0.125f, b.data());
  for (int ch = 0; ch < 64; ++ch) EXPECT_NEAR(a[ch], b[ch], 1e-5f * (1.0f + std::fabs(a[ch]))) << ch;
}

TEST(SmoothedKeys, CopyOnWriteCopiesTheMeansAndLeavesTheSharerAlone) {
  const Tokens t = biased_tokens(40, 1, 64, 20.0f, 8);
  const Tokens u = biased_tokens(40, 1, 64, -30.0f, 9);
  KvCache c = make_cache(DType::Q8_0, true, 256, 1);
  store_all(c, 0, t, 0, 40);
  const auto& set = kernels::attention_kernel_set(DType::Q8_0, DType::F16, AttentionAlgo::Sage, Isa::Scalar);
  const std::vector<float> q = random_q(64, 10, 0.3f);
  std::vector<float> before(64), after(64), shared(64);
  attend_head(c, 0, 0, AttentionParams{1, 1, 64, 0.125f}, 0, q.data(), 40, before.data(), set);
  c.share_prefix(1, 0, 36);  // seq 1 shares blocks 0..2, block 2 partly
  store_all(c, 1, u, 36, 40);  // diverges inside the shared block: copied first, means included
  EXPECT_NE(c.block_table(1)[2], c.block_table(0)[2]);
  attend_head(c, 0, 0, AttentionParams{1, 1, 64, 0.125f}, 0, q.data(), 40, after.data(), set);
  for (int ch = 0; ch < 64; ++ch) EXPECT_EQ(before[ch], after[ch]) << ch;
  // Seq 1 holds what a cache that stored t's first 36 tokens and then u's
  // from scratch holds: the same means, so the same bits.
  KvCache fresh = make_cache(DType::Q8_0, true, 256, 1);
  store_all(fresh, 0, t, 0, 36);
  store_all(fresh, 0, u, 36, 40);
  std::vector<float> alone(64);
  attend_head(c, 0, 1, AttentionParams{1, 1, 64, 0.125f}, 0, q.data(), 40, shared.data(), set);
  attend_head(fresh, 0, 0, AttentionParams{1, 1, 64, 0.125f}, 0, q.data(), 40, alone.data(), set);
  for (int ch = 0; ch < 64; ++ch) EXPECT_EQ(shared[ch], alone[ch]) << ch;
}

TEST(SmoothedKeys, OnlyABlockQuantizedKCanBeSmoothed) {
  for (DType k : {DType::F16, DType::F32, DType::BF16}) {
    try {
      make_cache(k, true);
      FAIL() << dtype_name(k);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("q8_0"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(kernels::smooths_keys(k, AttentionAlgo::Sage));
  }
  EXPECT_TRUE(kernels::smooths_keys(DType::Q4_0, AttentionAlgo::Sage));
  EXPECT_FALSE(kernels::smooths_keys(DType::Q4_0, AttentionAlgo::Exact));
}

TEST(KvCachePool, PagesAreCommittedAsBlocksAreWrittenNotForTheWholeContext) {
  // 4096 blocks of 2 heads x 16 rows x 64 F16 values: 16 MiB of keys reserved.
  KvCache c(KvShape{1, 2, 64, 4096 * kB, 1}, DType::F16, DType::F16, Isa::Scalar);
  const Tokens t = biased_tokens(kB, 2, 64, 1.0f, 11);
  store_all(c, 0, t, 0, kB);
  const long page = ::sysconf(_SC_PAGESIZE);
  const KvHeadView view = c.view(0, 0, 0);
  const size_t k_bytes = static_cast<size_t>(view.block_stride) * static_cast<size_t>(c.total_blocks());
  std::vector<unsigned char> resident((k_bytes + page - 1) / page);
  ASSERT_EQ(::mincore(const_cast<void*>(view.k), k_bytes, resident.data()), 0);
  size_t n = 0;
  for (unsigned char r : resident) n += r & 1;
  // One block of keys is 4 KiB: a page or two, not the 4096 the pool spans.
  EXPECT_LE(n, 4u) << "of " << resident.size() << " pages";
  EXPECT_GE(n, 1u);
}

}  // namespace kestrel
