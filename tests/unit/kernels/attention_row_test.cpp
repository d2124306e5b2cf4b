// The AVX2 row (decode) kernels of exact attention against their scalar twins,
// bit for bit (same summation order, kernels/avx2/attention_avx2.cpp), over
// head sizes with and without a tail past the blocks of 64, and over paged
// blocks in scrambled order with garbage between them.
// (tests/unit/kv/attention_test.cpp does the same for the AVX-512 kernels.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention_set.h"
#include "kernels/avx2/attention_avx2.h"

namespace kestrel::kernels {
namespace {

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& where) {
  for (size_t i = 0; i < a.size(); ++i) {
    uint32_t x, y;
    std::memcpy(&x, &a[i], 4);
    std::memcpy(&y, &b[i], 4);
    ASSERT_EQ(x, y) << where << " i " << i << ": " << a[i] << " vs " << b[i];
  }
}

// n rows of random keys and values in paged blocks of block_len rows: a pool
// of two more blocks than needed, in shuffled order, with a gap after each
// block; F32 and their F16 roundings.
struct PagedRows {
  int64_t stride = 0;
  std::vector<int32_t> ids;
  std::vector<float> k, v;
  std::vector<uint16_t> k16, v16;

  PagedRows(int d, int64_t block_len, int64_t n, std::mt19937& rng, std::normal_distribution<float>& nd) {
    const int64_t n_blocks = (n + block_len - 1) / block_len, pool = n_blocks + 2;
    stride = block_len * d + 8;  // a gap between blocks
    ids.resize(static_cast<size_t>(pool));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    k.resize(static_cast<size_t>(pool * stride));
    v.resize(k.size());
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    k16.resize(k.size());
    v16.resize(v.size());
    for (size_t i = 0; i < k.size(); ++i) {
      k16[i] = f32_to_fp16(k[i]);
      v16[i] = f32_to_fp16(v[i]);
    }
  }
  KvBlocks<float> f32(int64_t block_len) const { return {k.data(), v.data(), ids.data(), stride, block_len}; }
  KvBlocks<uint16_t> f16(int64_t block_len) const { return {k16.data(), v16.data(), ids.data(), stride, block_len}; }
  // The F16 rows as the attention table receives them.
  KvRows erased(int64_t block_len) const { return KvRows{k16.data(), v16.data(), ids.data(), stride * 2, block_len}; }
};

TEST(AttentionRowAvx2, EqualsTheTwinBitForBitOverPagedBlocks) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(31);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  // 8, 16, 48, 80, 136: tails past the blocks of 64 (summed in double); 12: the twin.
  for (int d : {8, 12, 16, 48, 64, 80, 128, 136})
    for (int64_t block_len : {1, 16, 64})
      for (int64_t n : {1, 2, 15, 17, 64, 300}) {
        const PagedRows rows(d, block_len, n, rng, nd);
        std::vector<float> q(static_cast<size_t>(d));
        for (auto& x : q) x = nd(rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        const KvBlocks<float> b32 = rows.f32(block_len);
        const KvBlocks<uint16_t> b16 = rows.f16(block_len);
        std::vector<float> want(static_cast<size_t>(d)), got(want.size());
        const std::string where = "d " + std::to_string(d) + " block " + std::to_string(block_len) + " n " +
                                  std::to_string(n);
        ref::attend_f16(b16, n, d, q.data(), scale, want.data());
        avx2::attend_f16(b16, n, d, q.data(), scale, got.data());
        expect_same_bits(want, got, "f16 " + where);
        ref::attend_f32(b32, n, d, q.data(), scale, want.data());
        avx2::attend_f32(b32, n, d, q.data(), scale, got.data());
        expect_same_bits(want, got, "f32 " + where);
        // Through the table at the AVX2 level: the same kernel.
        attention_kernel_set(DType::F16, AttentionAlgo::Exact, Isa::Avx2)
            .row(rows.erased(block_len), n, d, q.data(), scale, got.data());
        ref::attend_f16(b16, n, d, q.data(), scale, want.data());
        expect_same_bits(want, got, "f16 via the set " + where);
      }
}

// The group kernels (one GQA group per call, the cache streamed once): each
// head gets the twin's bits, for F16 and F32 caches, over paged blocks in
// scrambled order, groups of 1 to kMaxGroup heads, head sizes with a tail;
// and through the table at the AVX2 and AVX-512 levels (the latter takes the
// AVX2 group).
TEST(AttentionRowAvx2, GroupGivesEveryHeadTheTwinsBits) {
  if (!isa_supported(Isa::Avx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(37);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int d : {8, 12, 64, 80, 128})
    for (int64_t block_len : {1, 16})
      for (int64_t n : {1, 17, 300})
        for (int nq : {1, 3, 6, kMaxGroup}) {
          const PagedRows rows(d, block_len, n, rng, nd);
          std::vector<std::vector<float>> q(static_cast<size_t>(nq), std::vector<float>(static_cast<size_t>(d)));
          for (auto& row : q)
            for (auto& x : row) x = nd(rng);
          std::vector<std::vector<float>> got(q.size(), std::vector<float>(static_cast<size_t>(d)));
          std::vector<const float*> qp;
          std::vector<float*> op;
          for (int h = 0; h < nq; ++h) {
            qp.push_back(q[h].data());
            op.push_back(got[h].data());
          }
          const float scale = 1.0f / std::sqrt(static_cast<float>(d));
          const KvBlocks<float> b32 = rows.f32(block_len);
          const KvBlocks<uint16_t> b16 = rows.f16(block_len);
          const std::string where = "d " + std::to_string(d) + " block " + std::to_string(block_len) + " n " +
                                    std::to_string(n) + " heads " + std::to_string(nq);
          std::vector<float> want(static_cast<size_t>(d));
          avx2::attend_f16_group(b16, n, d, qp.data(), nq, scale, op.data());
          for (int h = 0; h < nq; ++h) {
            ref::attend_f16(b16, n, d, q[h].data(), scale, want.data());
            expect_same_bits(want, got[h], "f16 " + where + " head " + std::to_string(h));
          }
          avx2::attend_f32_group(b32, n, d, qp.data(), nq, scale, op.data());
          for (int h = 0; h < nq; ++h) {
            ref::attend_f32(b32, n, d, q[h].data(), scale, want.data());
            expect_same_bits(want, got[h], "f32 " + where + " head " + std::to_string(h));
          }
          for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
            const AttentionKernelSet& set = attention_kernel_set(DType::F16, AttentionAlgo::Exact, isa);
            ASSERT_NE(set.group, nullptr);
            set.group(rows.erased(block_len), n, d, qp.data(), nq, scale, op.data());
            for (int h = 0; h < nq; ++h) {
              ref::attend_f16(b16, n, d, q[h].data(), scale, want.data());
              expect_same_bits(want, got[h], "f16 via the set " + where);
            }
          }
        }
}

}  // namespace
}  // namespace kestrel::kernels
