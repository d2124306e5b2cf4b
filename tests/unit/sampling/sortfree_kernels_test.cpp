// The sorting-free sampler's passes on every SIMD level the host runs, against
// their scalar twins, over lengths that leave every tail and skip blocks.
#include "sampling/sortfree_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace kestrel::sampling {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa isa : supported_isas())
    if (isa != Isa::Scalar) out.push_back(isa);
  return out;
}

std::vector<int64_t> lengths() {
  std::vector<int64_t> out;
  for (int64_t n = 0; n <= 40; ++n) out.push_back(n);
  for (int64_t n : {255, 256, 257, 511, 1000, 4099, 49152 + 7}) out.push_back(n);
  return out;
}

// Logits on a coarse grid (ties) with some -inf and a few large values.
std::vector<float> row(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) {
    const uint64_t r = rng() % 100;
    v = r < 5 ? -kInf : r < 60 ? std::round(g(rng) * 4) / 4 : g(rng);
  }
  return x;
}

std::vector<int32_t> shuffled_ids(int64_t n, uint64_t seed) {
  std::vector<int32_t> id(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) id[static_cast<size_t>(i)] = static_cast<int32_t>(i * 7 % 1000003);
  std::shuffle(id.begin(), id.end(), std::mt19937_64(seed));
  return id;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(SortFreeKernels, ScanMaxIsExact) {
  const SortFreeKernels& ref = sortfree_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const SortFreeKernels& k = sortfree_kernels(isa);
    for (int64_t n : lengths()) {
      for (int nan_at : {-1, 0, 1, 2}) {
        auto x = row(n, 1 + static_cast<uint64_t>(n));
        if (nan_at >= 0 && n > 0) x[static_cast<size_t>((n - 1) * nan_at / 2)] = NAN;
        std::vector<float> bw(static_cast<size_t>(n_blocks(n))), bg(bw.size());
        const ScanResult want = ref.scan_max(x.data(), n, bw.data()), got = k.scan_max(x.data(), n, bg.data());
        ASSERT_EQ(got.nan, want.nan) << isa_name(isa) << " n=" << n;
        ASSERT_EQ(got.nan, nan_at >= 0 && n > 0);
        ASSERT_EQ(bits(got.max), bits(want.max)) << isa_name(isa) << " n=" << n;
        for (size_t b = 0; b < bw.size(); ++b) ASSERT_EQ(bits(bg[b]), bits(bw[b])) << isa_name(isa) << " n=" << n << " block " << b;
      }
    }
  }
}

TEST(SortFreeKernels, CompactCountAndFilterAreExact) {
  const SortFreeKernels& ref = sortfree_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const SortFreeKernels& k = sortfree_kernels(isa);
    for (int64_t n : lengths()) {
      const auto x = row(n, 100 + static_cast<uint64_t>(n));
      std::vector<float> bm(static_cast<size_t>(n_blocks(n)));
      ref.scan_max(x.data(), n, bm.data());
      for (float t : {-1e30f, 0.0f, 0.25f, 5.0f}) {
        std::vector<int32_t> iw(x.size()), ig(x.size());
        std::vector<float> vw(x.size()), vg(x.size());
        const int64_t cw = ref.compact_ge(x.data(), n, t, bm.data(), iw.data(), vw.data());
        const int64_t cg = k.compact_ge(x.data(), n, t, bm.data(), ig.data(), vg.data());
        ASSERT_EQ(cg, cw) << isa_name(isa) << " n=" << n << " t=" << t;
        for (int64_t i = 0; i < cw; ++i) {
          ASSERT_EQ(ig[static_cast<size_t>(i)], iw[static_cast<size_t>(i)]);
          ASSERT_EQ(bits(vg[static_cast<size_t>(i)]), bits(vw[static_cast<size_t>(i)]));
        }
        int64_t gw, ew, gg, eg;
        ref.count_split(x.data(), n, t, &gw, &ew);
        k.count_split(x.data(), n, t, &gg, &eg);
        ASSERT_EQ(gg, gw);
        ASSERT_EQ(eg, ew);
      }
      const auto ids = shuffled_ids(n, 5);
      for (Key key : {Key{0.25f, 500}, Key{0.0f, 0}, Key{0.0f, kIdMax}, kEverything, Key{kInf, 0}}) {
        for (bool keep_above : {true, false}) {
          auto lw = x, lg = x, aw = x, ag = x;
          auto idw = ids, idg = ids;
          std::vector<float> bw(x.size()), bg(x.size());
          for (size_t i = 0; i < x.size(); ++i) bw[i] = bg[i] = static_cast<float>(i);
          // With and without the optional parallel arrays.
          const int64_t cw = ref.filter(lw.data(), idw.data(), aw.data(), bw.data(), n, key, keep_above);
          const int64_t cg = k.filter(lg.data(), idg.data(), ag.data(), n % 2 ? bg.data() : nullptr, n, key, keep_above);
          ASSERT_EQ(cg, cw) << isa_name(isa) << " n=" << n;
          for (int64_t i = 0; i < cw; ++i) {
            const size_t s = static_cast<size_t>(i);
            ASSERT_EQ(bits(lg[s]), bits(lw[s]));
            ASSERT_EQ(idg[s], idw[s]);
            ASSERT_EQ(bits(ag[s]), bits(aw[s]));
            if (n % 2) ASSERT_EQ(bits(bg[s]), bits(bw[s]));
          }
        }
      }
    }
  }
}

TEST(SortFreeKernels, ExpWeightsWithinTwoUlpsOfStdExp) {
  const SortFreeKernels& ref = sortfree_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const SortFreeKernels& k = sortfree_kernels(isa);
    for (int64_t n : lengths()) {
      // Arguments from 0 down to -130 (through the subnormal range), and -inf.
      std::vector<float> x(static_cast<size_t>(n));
      std::mt19937_64 rng(static_cast<uint64_t>(n));
      for (auto& v : x) v = rng() % 50 == 0 ? -kInf : -130.0f * std::uniform_real_distribution<float>(0, 1)(rng);
      if (n > 0) x[0] = 0.0f;
      for (float temp : {1.0f, 0.8f, 1.7f}) {
        std::vector<float> want(x.size()), got(x.size() + 1, 0.0f);
        got.back() = 123.0f;
        const double sw = ref.exp_weights(x.data(), n, 0.0f, temp, want.data());
        const double sg = k.exp_weights(x.data(), n, 0.0f, temp, got.data());
        ASSERT_EQ(got.back(), 123.0f) << "wrote past the end";
        for (size_t i = 0; i < x.size(); ++i) {
          if (std::isinf(x[i])) {
            ASSERT_EQ(got[i], 0.0f);
            continue;
          }
          // 2 ulps of a normal result (1 seen), or 2 of the smallest subnormal below it.
          const double tol = std::max(2.0 * std::ldexp(std::fabs(want[i]), -23), 2.0 * std::ldexp(1.0, -149));
          ASSERT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), tol)
              << isa_name(isa) << " x=" << x[i] << " T=" << temp << ": " << got[i] << " vs " << want[i];
        }
        ASSERT_NEAR(sg, sw, 1e-6 * sw + 1e-30) << isa_name(isa) << " n=" << n;
      }
    }
  }
}

TEST(SortFreeKernels, NormalizeIsExact) {
  const SortFreeKernels& ref = sortfree_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    for (int64_t n : lengths()) {
      std::vector<float> w(static_cast<size_t>(n));
      std::mt19937_64 rng(7);
      for (auto& v : w) v = std::uniform_real_distribution<float>(0, 1)(rng);
      auto a = w, b = w;
      ref.normalize(a.data(), n, 3.7);
      sortfree_kernels(isa).normalize(b.data(), n, 3.7);
      for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(bits(b[i]), bits(a[i])) << isa_name(isa);
    }
  }
}

TEST(SortFreeKernels, MaskedSumsAgree) {
  const SortFreeKernels& ref = sortfree_kernels(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const SortFreeKernels& k = sortfree_kernels(isa);
    for (int64_t n : lengths()) {
      auto l = row(n, 200 + static_cast<uint64_t>(n));
      const auto id = shuffled_ids(n, 9);
      std::vector<float> v(l.size());
      std::mt19937_64 rng(3);
      for (auto& x : v) x = std::uniform_real_distribution<float>(0, 1)(rng);
      for (Key key : {kEverything, Key{0.25f, 500}, Key{0.0f, kIdMax}, Key{2.0f, 0}}) {
        std::vector<double> sw(static_cast<size_t>(n_chunks(n))), sg(sw.size());
        const double tw = ref.chunk_sums(l.data(), id.data(), v.data(), n, key, sw.data());
        const double tg = k.chunk_sums(l.data(), id.data(), v.data(), n, key, sg.data());
        ASSERT_NEAR(tg, tw, 1e-12 * (tw + 1)) << isa_name(isa) << " n=" << n;
        for (size_t c = 0; c < sw.size(); ++c) ASSERT_NEAR(sg[c], sw[c], 1e-12 * (sw[c] + 1));
        const Key other{-1.0f, 100};
        const AboveSums aw = ref.sums_above(l.data(), id.data(), v.data(), n, key, other);
        const AboveSums ag = k.sums_above(l.data(), id.data(), v.data(), n, key, other);
        for (int j = 0; j < 2; ++j) {
          ASSERT_EQ(ag.count[j], aw.count[j]) << isa_name(isa) << " n=" << n;
          ASSERT_NEAR(ag.mass[j], aw.mass[j], 1e-12 * (aw.mass[j] + 1));
        }
      }
    }
  }
}

TEST(SortFreeKernels, KeyOrderIsLogitThenLowerId) {
  EXPECT_TRUE(above(1.0f, 9, Key{0.5f, 0}));
  EXPECT_TRUE(above(1.0f, 3, Key{1.0f, 4}));
  EXPECT_FALSE(above(1.0f, 4, Key{1.0f, 4}));
  EXPECT_TRUE(above(1.0f, 4, Key{1.0f, kIdMax}));  // {x, kIdMax}: l >= x
  EXPECT_FALSE(above(1.0f, 0, Key{1.0f, 0}));       // {x, 0}: l > x
  EXPECT_TRUE(above(-kInf, 0, kEverything));
  EXPECT_TRUE(higher(Key{1.0f, 3}, Key{1.0f, 4}));
  EXPECT_FALSE(higher(Key{1.0f, 4}, Key{1.0f, 4}));
}

}  // namespace
}  // namespace kestrel::sampling
