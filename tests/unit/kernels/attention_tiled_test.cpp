// Tiled prompt attention (kernels/attention_tiled.h): the polynomial exp against
// std::exp, the scalar twin against a double-precision softmax attention, and
// the AVX2 and AVX-512 kernels against the scalar twin bit for bit, over paged
// blocks in scrambled order, rows that see different prefixes, and tile edges.
#include "kernels/attention_tiled.h"
#include "kernels/attention_set.h"
#include "kernels/avx2/attention_avx2.h"
#include "core/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "core/fp16.h"

namespace kestrel::kernels {
namespace {

// A paged cache for one kv head: n positions in blocks of `block_len`, the
// physical blocks in a shuffled order.
template <class T>
struct PagedHead {
  int d;
  int64_t block_len;
  std::vector<int32_t> ids;
  std::vector<T> k, v;
  std::vector<std::vector<double>> kd, vd;  // what the cache holds, as doubles

  PagedHead(int64_t n, int d_, int64_t bl, uint32_t seed) : d(d_), block_len(bl) {
    const int64_t blocks = (n + bl - 1) / bl + 1;
    ids.resize(static_cast<size_t>(blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    k.assign(static_cast<size_t>(blocks * bl * d), T{});
    v = k;
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t pos = 0; pos < n; ++pos) {
      const size_t off = static_cast<size_t>(ids[pos / bl] * bl * d + (pos % bl) * d);
      std::vector<double> kr(d), vr(d);
      for (int c = 0; c < d; ++c) {
        const float kx = 2.0f * nd(rng), vx = nd(rng);
        if constexpr (std::is_same_v<T, uint16_t>) {
          k[off + c] = f32_to_fp16(kx);
          v[off + c] = f32_to_fp16(vx);
          kr[c] = fp16_to_f32(k[off + c]);
          vr[c] = fp16_to_f32(v[off + c]);
        } else {
          k[off + c] = kx;
          v[off + c] = vx;
          kr[c] = kx;
          vr[c] = vx;
        }
      }
      kd.push_back(kr);
      vd.push_back(vr);
    }
  }
  KvBlocks<T> blocks() const { return KvBlocks<T>{k.data(), v.data(), ids.data(), block_len * d, block_len}; }
};

std::vector<double> reference(const std::vector<std::vector<double>>& K, const std::vector<std::vector<double>>& V,
                              const float* q, int64_t n, int d, double scale) {
  std::vector<double> s(static_cast<size_t>(n));
  double mx = -1e300;
  for (int64_t j = 0; j < n; ++j) {
    double a = 0;
    for (int c = 0; c < d; ++c) a += static_cast<double>(q[c]) * K[j][c];
    s[j] = a * scale;
    mx = std::max(mx, s[j]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  std::vector<double> out(d, 0.0);
  for (int64_t j = 0; j < n; ++j)
    for (int c = 0; c < d; ++c) out[c] += s[j] / sum * V[j][c];
  return out;
}

struct Case {
  int d;
  int rows;
  int64_t block_len;
  std::vector<int64_t> visible;  // per row (cycled)
};

template <class T>
void run_case(const Case& cs, uint32_t seed) {
  const int64_t n = *std::max_element(cs.visible.begin(), cs.visible.end());
  PagedHead<T> head(n, cs.d, cs.block_len, seed);
  std::mt19937 rng(seed + 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<std::vector<float>> q(cs.rows, std::vector<float>(cs.d));
  for (auto& r : q)
    for (auto& x : r) x = nd(rng);
  std::vector<int64_t> vis(cs.rows);
  for (int r = 0; r < cs.rows; ++r) vis[r] = cs.visible[r % cs.visible.size()];
  std::vector<std::vector<float>> out_ref(cs.rows, std::vector<float>(cs.d)), out_simd = out_ref;
  std::vector<const float*> qp(cs.rows);
  std::vector<float*> op_ref(cs.rows), op_simd(cs.rows);
  for (int r = 0; r < cs.rows; ++r) {
    qp[r] = q[r].data();
    op_ref[r] = out_ref[r].data();
    op_simd[r] = out_simd[r].data();
  }
  std::vector<float> scratch(tile_scratch_floats(cs.d));
  const float scale = 1.0f / std::sqrt(static_cast<float>(cs.d));
  const TileRows rows_ref{qp.data(), op_ref.data(), vis.data(), cs.rows};
  const TileRows rows_simd{qp.data(), op_simd.data(), vis.data(), cs.rows};
  if constexpr (std::is_same_v<T, uint16_t>) {
    ref::attend_tile_f16(head.blocks(), cs.d, rows_ref, scale, scratch.data());
  } else {
    ref::attend_tile_f32(head.blocks(), cs.d, rows_ref, scale, scratch.data());
  }
  for (int r = 0; r < cs.rows; ++r) {
    const std::vector<double> want = reference(head.kd, head.vd, q[r].data(), vis[r], cs.d, scale);
    double worst = 0, norm = 0;
    for (int c = 0; c < cs.d; ++c) {
      worst = std::max(worst, std::abs(out_ref[r][c] - want[c]));
      norm = std::max(norm, std::abs(want[c]));
    }
    // Float sums of d products and of up to n terms: a few 1e-6 relative.
    ASSERT_LT(worst, 2e-5 * std::max(1.0, norm)) << "row " << r << " visible " << vis[r] << " d " << cs.d;
  }
  struct Simd {
    Isa isa;
    void (*f16)(const KvBlocks<uint16_t>&, int, const TileRows&, float, float*);
    void (*f32)(const KvBlocks<float>&, int, const TileRows&, float, float*);
  };
  const Simd simds[] = {{Isa::Avx2, avx2::attend_tile_f16, avx2::attend_tile_f32},
                        {Isa::Avx512, avx512::attend_tile_f16, avx512::attend_tile_f32}};
  for (const Simd& simd : simds) {
    if (!isa_supported(simd.isa)) {
      GTEST_LOG_(INFO) << "no " << isa_name(simd.isa) << " on this CPU: its tiles are not checked";
      continue;
    }
    if constexpr (std::is_same_v<T, uint16_t>) {
      simd.f16(head.blocks(), cs.d, rows_simd, scale, scratch.data());
    } else {
      simd.f32(head.blocks(), cs.d, rows_simd, scale, scratch.data());
    }
    for (int r = 0; r < cs.rows; ++r)
      for (int c = 0; c < cs.d; ++c) {
        uint32_t a, b;
        std::memcpy(&a, &out_ref[r][c], 4);
        std::memcpy(&b, &out_simd[r][c], 4);
        ASSERT_EQ(a, b) << isa_name(simd.isa) << " row " << r << " col " << c << " visible " << vis[r] << ": "
                        << out_ref[r][c] << " vs " << out_simd[r][c];
      }
  }
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {64, 1, 16, {1}},
      {64, 5, 16, {63, 64, 65, 1, 130}},
      {64, 64, 32, {200, 199, 137, 64, 3}},
      {128, 13, 16, {97, 128, 129, 20}},
      {128, 64, 256, {300, 301, 302, 303}},
      {80, 7, 16, {70, 5, 140}},  // d not a multiple of 64: the twin runs on both
  };
  return c;
}

TEST(AttentionTiled, F32ScalarMatchesReferenceAndSimdMatchesScalarBitForBit) {
  uint32_t seed = 11;
  for (const Case& c : cases()) run_case<float>(c, seed++);
}

TEST(AttentionTiled, F16ScalarMatchesReferenceAndSimdMatchesScalarBitForBit) {
  uint32_t seed = 101;
  for (const Case& c : cases()) run_case<uint16_t>(c, seed++);
}

TEST(AttentionKernelSet, EachLevelTheCpuRunsHasItsOwnKernels) {
  for (DType t : {DType::F16, DType::F32}) {
    const AttentionKernelSet& scalar = attention_kernel_set(t, AttentionAlgo::Exact, Isa::Scalar);
    EXPECT_EQ(scalar.k_type, t);
    EXPECT_EQ(scalar.v_type, t);
    EXPECT_EQ(scalar.isa, Isa::Scalar);
    const void* seen_row = reinterpret_cast<const void*>(scalar.row);
    for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
      if (!isa_supported(isa)) {
        GTEST_LOG_(INFO) << "no " << isa_name(isa) << " on this CPU: its attention kernels are not checked";
        continue;
      }
      const AttentionKernelSet& simd = attention_kernel_set(t, AttentionAlgo::Exact, isa);
      EXPECT_NE(reinterpret_cast<const void*>(simd.row), seen_row) << isa_name(isa);
      EXPECT_NE(simd.tile, scalar.tile) << isa_name(isa);
      seen_row = reinterpret_cast<const void*>(simd.row);
    }
  }
  // sage and int8 have AVX-512 (VNNI) prompt tiles; their rows at that level
  // are the AVX2 ones.
  for (AttentionAlgo a : {AttentionAlgo::Sage, AttentionAlgo::Int8}) {
    if (!isa_supported(Isa::Avx2)) break;
    const AttentionKernelSet& scalar = attention_kernel_set(DType::F16, a, Isa::Scalar);
    const AttentionKernelSet& avx2 = attention_kernel_set(DType::F16, a, Isa::Avx2);
    EXPECT_NE(avx2.row, scalar.row);
    EXPECT_NE(avx2.tile, scalar.tile);
    if (isa_supported(Isa::Avx512)) {
      EXPECT_EQ(attention_kernel_set(DType::F16, a, Isa::Avx512).row, avx2.row);
      EXPECT_NE(attention_kernel_set(DType::F16, a, Isa::Avx512).tile, avx2.tile);
    }
  }
}

TEST(AttentionKernelSet, RefusesAPairWithoutKernelsNamingTheValidOnes) {
  EXPECT_FALSE(has_attention_kernels(DType::Q4_K, AttentionAlgo::Exact));
  try {
    attention_kernel_set(DType::Q4_K, AttentionAlgo::Exact, Isa::Scalar);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("q4_K"), std::string::npos) << what;
    EXPECT_NE(what.find("exact: K any of f32, f16, bf16, q8_0, q4_0"), std::string::npos) << what;
  }
}

TEST(AttentionKernelSet, ErasedRowsReachTheTypedKernel) {
  // The set's row function on erased rows equals the typed twin on the same rows.
  constexpr int d = 64, n = 37;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> k(n * d), v(n * d);
  std::vector<float> q(d), a(d), b(d);
  for (auto& x : k) x = f32_to_fp16(nd(rng));
  for (auto& x : v) x = f32_to_fp16(nd(rng));
  for (auto& x : q) x = nd(rng);
  const KvBlocks<uint16_t> typed = contiguous_rows(k.data(), v.data(), n);
  const KvRows erased{k.data(), v.data(), typed.ids, 0, typed.block_len};
  attention_kernel_set(DType::F16, AttentionAlgo::Exact, Isa::Scalar).row(erased, n, d, q.data(), 0.125f, a.data());
  ref::attend_f16(typed, n, d, q.data(), 0.125f, b.data());
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace kestrel::kernels
