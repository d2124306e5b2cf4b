#include "kv/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/attention_set.h"

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
  for (DType type : {DType::F32, DType::F16}) {
    KvCache cache(KvShape{2, n_kv, d, 64, 2}, type);
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    // [pos][kv_head][d], stored in layer 1, sequence 1.
    std::vector<std::vector<std::vector<float>>> K(n_pos), V(n_pos);
    for (int p = 0; p < n_pos; ++p) {
      std::vector<float> kr(n_kv * d), vr(n_kv * d);
      for (auto& x : kr) x = nd(rng);
      for (auto& x : vr) x = nd(rng);
      if (type == DType::F16) {  // the reference sees what the cache can hold
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
        attend_head(cache, 1, 1, ap, h, q.data(), visible, out.data(),
                    kernels::attention_kernel_set(type, kernels::AttentionAlgo::Exact, best_isa()));
        std::vector<std::vector<float>> kk, vv;
        for (int p = 0; p < visible; ++p) {
          kk.push_back(K[p][h / (n_head / n_kv)]);
          vv.push_back(V[p][h / (n_head / n_kv)]);
        }
        std::vector<float> qr = q;
        if (type == DType::F16)
          for (auto& x : qr) x = fp16_to_f32(f32_to_fp16(x));
        const auto ref = reference(qr, kk, vv, d, ap.scale);
        // An F16 cache keeps the running V sum in F16 (as llama.cpp does): each of
        // the `visible` updates may round by 2^-11 relative.
        const double tol = type == DType::F16 ? 2e-3 * visible : 2e-5;
        for (int i = 0; i < d; ++i) ASSERT_NEAR(out[i], ref[i], tol) << "head " << h << " visible " << visible;
      }
    }
  }
}

TEST(KvCache, RejectsPositionsOutsideTheContext) {
  KvCache cache(KvShape{1, 1, 4, 8, 1}, DType::F16);
  std::vector<float> row(4, 1.0f);
  EXPECT_THROW(cache.store(0, 0, 8, row.data(), row.data()), Error);
  EXPECT_THROW(cache.set_seq_len(0, 9), Error);
  EXPECT_THROW(KvCache(KvShape{0, 1, 4, 8, 1}, DType::F32), Error);
  // One block of kBlock positions holds the 8 of the context: K and V, F16.
  EXPECT_EQ(cache.bytes(), 2u * KvCache::kBlock * 4 * 2);
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
      const auto kv16 = kernels::contiguous_rows(k16.data(), v16.data(), n);
      const auto kv32 = kernels::contiguous_rows(k.data(), v.data(), n);
      kernels::ref::attend_f16(kv16, n, d, q.data(), scale, a.data());
      kernels::avx512::attend_f16(kv16, n, d, q.data(), scale, b.data());
      kernels::ref::attend_f32(kv32, n, d, q.data(), scale, c.data());
      kernels::avx512::attend_f32(kv32, n, d, q.data(), scale, e.data());
      for (int i = 0; i < d; ++i) {
        ASSERT_EQ(a[i], b[i]) << "f16 d " << d << " n " << n << " i " << i;
        ASSERT_EQ(c[i], e[i]) << "f32 d " << d << " n " << n << " i " << i;
      }
    }
  }
}

// Rows split into blocks scattered over a pool (shuffled ids, a gap between
// blocks, garbage in the unused blocks) give the bits of the same rows in one
// contiguous run, on every kernel: the softmax state crosses block boundaries
// unchanged. n is below, at and above multiples of the block length.
TEST(AttentionKernels, BlocksGiveTheBitsOfOneContiguousRun) {
  std::mt19937 rng(23);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  struct Typed {
    kernels::AttendF16Fn f16;
    kernels::AttendF32Fn f32;
  };
  std::vector<std::pair<const char*, Typed>> kerns = {{"scalar", {kernels::ref::attend_f16, kernels::ref::attend_f32}}};
  if (isa_supported(Isa::Avx512)) kerns.push_back({"avx512", {kernels::avx512::attend_f16, kernels::avx512::attend_f32}});
  for (int d : {8, 16, 64, 80}) {
    for (int64_t block_len : {1, 3, 16, 64}) {
      for (int64_t n : {1, 2, 15, 16, 17, 31, 33, 64, 65, 130}) {
        const int64_t n_blocks = (n + block_len - 1) / block_len;
        const int64_t pool = n_blocks + 3;           // unused blocks hold garbage
        const int64_t stride = block_len * d + 8;    // a gap between blocks
        std::vector<float> k(n * d), v(n * d), q(d);
        for (auto& x : k) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        for (auto& x : q) x = nd(rng);
        std::vector<int32_t> ids(pool);
        for (int64_t i = 0; i < pool; ++i) ids[i] = static_cast<int32_t>(i);
        std::shuffle(ids.begin(), ids.end(), rng);
        std::vector<float> pk(pool * stride), pv(pool * stride);
        for (auto& x : pk) x = 1e4f * nd(rng);  // would change every bit if read
        for (auto& x : pv) x = 1e4f * nd(rng);
        for (int64_t r = 0; r < n; ++r)
          for (int i = 0; i < d; ++i) {
            const int64_t at = ids[r / block_len] * stride + (r % block_len) * d + i;
            pk[at] = k[r * d + i];
            pv[at] = v[r * d + i];
          }
        std::vector<uint16_t> k16(k.size()), v16(v.size()), pk16(pk.size()), pv16(pv.size());
        for (size_t i = 0; i < k.size(); ++i) {
          k16[i] = f32_to_fp16(k[i]);
          v16[i] = f32_to_fp16(v[i]);
        }
        for (size_t i = 0; i < pk.size(); ++i) {
          pk16[i] = f32_to_fp16(pk[i]);
          pv16[i] = f32_to_fp16(pv[i]);
        }
        const float scale = 1.0f / std::sqrt(float(d));
        std::vector<float> want16(d), want32(d), got(d);
        kernels::ref::attend_f16(kernels::contiguous_rows(k16.data(), v16.data(), n), n, d, q.data(), scale, want16.data());
        kernels::ref::attend_f32(kernels::contiguous_rows(k.data(), v.data(), n), n, d, q.data(), scale, want32.data());
        const kernels::KvBlocks<uint16_t> b16{pk16.data(), pv16.data(), ids.data(), stride, block_len};
        const kernels::KvBlocks<float> b32{pk.data(), pv.data(), ids.data(), stride, block_len};
        for (const auto& [name, kern] : kerns) {
          kern.f16(b16, n, d, q.data(), scale, got.data());
          for (int i = 0; i < d; ++i)
            ASSERT_EQ(got[i], want16[i]) << name << " f16 d " << d << " block " << block_len << " n " << n << " i "
                                         << i;
          kern.f32(b32, n, d, q.data(), scale, got.data());
          for (int i = 0; i < d; ++i)
            ASSERT_EQ(got[i], want32[i]) << name << " f32 d " << d << " block " << block_len << " n " << n << " i "
                                         << i;
        }
      }
    }
  }
}

}  // namespace kestrel
