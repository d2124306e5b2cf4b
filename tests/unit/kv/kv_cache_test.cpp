// The paged KV cache: blocks taken on demand and given back, reference counts
// of shared prefixes, copy-on-write of a shared partly filled block, the error
// when the pool runs out, and attention over (shared) blocks giving the bits of
// the same rows stored contiguously.
#include "kv/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kv/attention.h"
#include "kernels/attention_set.h"

namespace kestrel {
namespace {

constexpr int kB = KvCache::kBlock;

// One layer, one kv head of dimension 4; row value = tag + pos (exact in F16
// for the small numbers used here).
void store_row(KvCache& c, int seq, int64_t pos, float tag) {
  std::vector<float> k(4, tag + static_cast<float>(pos)), v(4, -(tag + static_cast<float>(pos)));
  c.store(0, seq, pos, k.data(), v.data());
}

// The key stored for (seq, pos), read through the block table.
float key_at(const KvCache& c, int seq, int64_t pos) {
  const KvHeadView h = c.view(0, seq, 0);
  const auto* base = static_cast<const float*>(h.k);
  return base[h.blocks[pos / kB] * (h.block_stride / 4) + (pos % kB) * 4];  // stride in bytes, F32 rows
}

}  // namespace

TEST(KvCache, TakesBlocksOnDemandAndGivesThemBack) {
  KvCache c(KvShape{1, 1, 4, 64, 2}, DType::F32);
  EXPECT_EQ(c.total_blocks(), 2 * 64 / kB);  // default pool: every sequence can fill its context
  EXPECT_EQ(c.used_blocks(), 0);
  store_row(c, 0, 0, 100);
  EXPECT_EQ(c.used_blocks(), 1);
  for (int p = 1; p < kB; ++p) store_row(c, 0, p, 100);
  EXPECT_EQ(c.used_blocks(), 1);  // still the first block
  store_row(c, 0, kB, 100);
  EXPECT_EQ(c.used_blocks(), 2);
  store_row(c, 1, 2 * kB + 3, 200);  // a gap: the blocks before it are taken too
  EXPECT_EQ(c.block_table(1).size(), 3u);
  EXPECT_EQ(c.used_blocks(), 5);
  EXPECT_EQ(c.free_blocks(), c.total_blocks() - 5);
  c.set_seq_len(0, kB + 1);
  c.set_seq_len(1, 2 * kB + 4);
  EXPECT_EQ(key_at(c, 0, kB), 100 + kB);
  EXPECT_EQ(key_at(c, 1, 2 * kB + 3), 200 + 2 * kB + 3);

  c.set_seq_len(1, kB);  // shortening gives back the blocks past the end
  EXPECT_EQ(c.block_table(1).size(), 1u);
  EXPECT_EQ(c.used_blocks(), 3);
  c.set_seq_len(1, 0);
  EXPECT_EQ(c.used_blocks(), 2);
  c.clear_seq(0);
  EXPECT_EQ(c.used_blocks(), 0);
  EXPECT_EQ(c.seq_len(0), 0);
  EXPECT_EQ(c.free_blocks(), c.total_blocks());
  EXPECT_THROW(c.seq_len(2), Error);
}

TEST(KvCache, RunningOutOfBlocksIsAnErrorWithTheNumbers) {
  KvShape shape{1, 1, 4, 64, 2};
  shape.n_pool = 2 * kB;  // two blocks for two sequences of up to 64 positions
  KvCache c(shape, DType::F16);
  EXPECT_EQ(c.total_blocks(), 2);
  for (int p = 0; p < 2 * kB; ++p) store_row(c, 0, p, 1);
  EXPECT_EQ(c.free_blocks(), 0);
  EXPECT_EQ(c.blocks_needed(1, 1), 1);
  try {
    store_row(c, 1, 0, 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of blocks"), std::string::npos) << m;
    EXPECT_NE(m.find("2 blocks of 16 positions"), std::string::npos) << m;
  }
  EXPECT_TRUE(c.block_table(1).empty());  // nothing half-done
  EXPECT_EQ(c.used_blocks(), 2);
  EXPECT_THROW(c.set_seq_len(1, 1), Error);
  c.set_seq_len(0, kB);  // one block back
  store_row(c, 1, 0, 2);
  EXPECT_EQ(c.used_blocks(), 2);
  EXPECT_THROW(store_row(c, 0, 64, 1), Error);  // outside the context
}

TEST(KvCache, SharedPrefixIsCountedOnceAndCopiedBeforeItIsWritten) {
  KvCache c(KvShape{1, 1, 4, 128, 3}, DType::F32);
  const int n = 2 * kB + 8;  // two full blocks and half of a third
  for (int p = 0; p < n; ++p) store_row(c, 0, p, 1000);
  c.set_seq_len(0, n);
  EXPECT_EQ(c.used_blocks(), 3);

  c.share_prefix(1, 0, n);
  EXPECT_EQ(c.seq_len(1), n);
  EXPECT_EQ(c.used_blocks(), 3);  // nothing copied yet
  EXPECT_EQ(c.block_table(1), c.block_table(0));
  for (int32_t b : c.block_table(0)) EXPECT_EQ(c.ref_count(b), 2);
  const std::vector<int> both = {0, 1};
  EXPECT_EQ(c.blocks_held(both), 3);
  // Writing position n lands in the shared half-full block: a copy first.
  EXPECT_EQ(c.blocks_needed(1, n + 1), 1);
  EXPECT_EQ(c.blocks_needed(1, 3 * kB), 1);
  EXPECT_EQ(c.blocks_needed(1, 3 * kB + 1), 2);
  EXPECT_EQ(c.blocks_needed(1, n), 0);

  store_row(c, 1, n, 2000);  // sequence 1 diverges inside the shared block
  c.set_seq_len(1, n + 1);
  EXPECT_EQ(c.used_blocks(), 4);
  EXPECT_NE(c.block_table(1)[2], c.block_table(0)[2]);
  EXPECT_EQ(c.block_table(1)[0], c.block_table(0)[0]);
  EXPECT_EQ(c.ref_count(c.block_table(0)[0]), 2);
  EXPECT_EQ(c.ref_count(c.block_table(0)[2]), 1);
  for (int p = 0; p < n; ++p) EXPECT_EQ(key_at(c, 1, p), 1000 + p) << p;  // the copy kept the prefix
  EXPECT_EQ(key_at(c, 1, n), 2000 + n);

  store_row(c, 0, n, 3000);  // sequence 0's block is its own again: written in place
  EXPECT_EQ(c.used_blocks(), 4);
  EXPECT_EQ(key_at(c, 0, n), 3000 + n);
  EXPECT_EQ(key_at(c, 1, n), 2000 + n);

  // A prefix ending on a block boundary needs a fresh block, not a copy.
  c.share_prefix(2, 0, 2 * kB);
  EXPECT_EQ(c.block_table(2).size(), 2u);
  EXPECT_EQ(c.blocks_needed(2, 2 * kB + 1), 1);
  EXPECT_EQ(c.ref_count(c.block_table(0)[1]), 3);
  EXPECT_THROW(c.share_prefix(2, 0, n + 2), Error);  // more than sequence 0 holds

  // Shortening and clearing give back only blocks no one else holds.
  c.set_seq_len(0, 10);
  EXPECT_EQ(c.used_blocks(), 3);  // sequence 0's third block went back; its second is still shared
  EXPECT_EQ(c.ref_count(c.block_table(1)[1]), 2);
  c.clear_seq(1);
  EXPECT_EQ(c.used_blocks(), 2);
  c.clear();
  EXPECT_EQ(c.used_blocks(), 0);
  EXPECT_EQ(c.free_blocks(), c.total_blocks());
}

// Two sequences share a prefix that ends inside a block, then each goes on with
// its own rows. attend_head over their block tables gives, bit for bit, what the
// kernel gives over the same rows gathered contiguously, for every visible
// length around the block boundaries, every query head, both storage types and
// every kernel the host runs.
TEST(KvCache, AttentionOverSharedBlocksEqualsContiguousRows) {
  const int n_layer = 2, n_kv = 2, n_head = 4, d = 32;
  const int n_shared = 37, n_total[2] = {70, 90};
  std::vector<Isa> isas = {Isa::Scalar};
  if (isa_supported(Isa::Avx512)) isas.push_back(Isa::Avx512);
  for (DType type : {DType::F16, DType::F32}) {
    KvCache cache(KvShape{n_layer, n_kv, d, 128, 2}, type);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    // rows[seq][layer][pos]: [n_kv * d], what each sequence holds.
    std::vector<std::vector<std::vector<std::vector<float>>>> rows_k(2), rows_v(2);
    for (int s = 0; s < 2; ++s) {
      rows_k[s].assign(n_layer, {});
      rows_v[s].assign(n_layer, {});
    }
    auto put = [&](int s, int64_t p) {
      for (int l = 0; l < n_layer; ++l) {
        std::vector<float> k(n_kv * d), v(n_kv * d);
        for (auto& x : k) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        cache.store(l, s, p, k.data(), v.data());
        rows_k[s][l].push_back(k);
        rows_v[s][l].push_back(v);
      }
    };
    for (int p = 0; p < n_total[0]; ++p) put(0, p);
    cache.set_seq_len(0, n_total[0]);
    cache.share_prefix(1, 0, n_shared);
    for (int l = 0; l < n_layer; ++l) {
      rows_k[1][l].assign(rows_k[0][l].begin(), rows_k[0][l].begin() + n_shared);
      rows_v[1][l].assign(rows_v[0][l].begin(), rows_v[0][l].begin() + n_shared);
    }
    for (int p = n_shared; p < n_total[1]; ++p) put(1, p);
    cache.set_seq_len(1, n_total[1]);
    EXPECT_EQ(cache.ref_count(cache.block_table(1)[0]), 2);  // still shared
    EXPECT_EQ(cache.ref_count(cache.block_table(1)[1]), 2);
    EXPECT_NE(cache.block_table(1)[2], cache.block_table(0)[2]);  // copied when sequence 1 wrote into it

    const AttentionParams ap{n_head, n_kv, d, 1.0f / std::sqrt(float(d))};
    std::vector<float> q(d), got(d), want(d);
    for (int s = 0; s < 2; ++s) {
      for (int l = 0; l < n_layer; ++l) {
        for (int h = 0; h < n_head; ++h) {
          const int kvh = h / (n_head / n_kv);
          const int64_t n = n_total[s];
          std::vector<float> k(n * d), v(n * d);
          std::vector<uint16_t> k16(n * d), v16(n * d);
          for (int64_t p = 0; p < n; ++p)
            for (int i = 0; i < d; ++i) {
              k[p * d + i] = rows_k[s][l][p][kvh * d + i];
              v[p * d + i] = rows_v[s][l][p][kvh * d + i];
              k16[p * d + i] = f32_to_fp16(k[p * d + i]);
              v16[p * d + i] = f32_to_fp16(v[p * d + i]);
            }
          for (auto& x : q) x = nd(rng);
          for (int64_t visible : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{n_shared},
                                  int64_t{n_shared + 1}, int64_t{48}, int64_t{49}, n}) {
            for (Isa isa : isas) {
              // The typed kernel of this Isa on contiguous rows against the
              // paged cache through the picked (type, algorithm, Isa) set.
              const bool simd = isa == Isa::Avx512;
              if (type == DType::F16)
                (simd ? kernels::avx512::attend_f16 : kernels::ref::attend_f16)(
                    kernels::contiguous_rows(k16.data(), v16.data(), visible), visible, d, q.data(), ap.scale,
                    want.data());
              else
                (simd ? kernels::avx512::attend_f32 : kernels::ref::attend_f32)(
                    kernels::contiguous_rows(k.data(), v.data(), visible), visible, d, q.data(), ap.scale,
                    want.data());
              attend_head(cache, l, s, ap, h, q.data(), visible, got.data(),
                          kernels::attention_kernel_set(type, kernels::AttentionAlgo::Exact, isa));
              for (int i = 0; i < d; ++i)
                ASSERT_EQ(got[i], want[i]) << "seq " << s << " layer " << l << " head " << h << " visible "
                                           << visible << " isa " << static_cast<int>(isa) << " i " << i;
            }
          }
        }
      }
    }
  }
}

}  // namespace kestrel

namespace kestrel {

// Block formats (and K and V of different types): rows are whole quant blocks,
// so copy-on-write copies a shared block as bytes. A sequence that diverges
// inside a shared partly filled block sees the common rows byte for byte, and
// the other sequence's bytes do not move.
TEST(KvCache, CopyOnWriteIsByteCorrectForBlockFormats) {
  constexpr int d = 64, n_kv = 2, n_layer = 2;
  const std::pair<DType, DType> pairs[] = {{DType::Q4_0, DType::Q4_0}, {DType::Q8_0, DType::Q5_1},
                                           {DType::Q4_1, DType::F16}, {DType::BF16, DType::Q5_0}};
  for (const auto& [kt, vt] : pairs) {
    KvCache c(KvShape{n_layer, n_kv, d, 64, 2}, kt, vt);
    EXPECT_EQ(c.k_row_bytes(), row_bytes(kt, d));
    EXPECT_EQ(c.v_row_bytes(), row_bytes(vt, d));
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    std::vector<float> k(n_kv * d), v(n_kv * d);
    auto fill = [&] {
      for (auto& x : k) x = nd(rng);
      for (auto& x : v) x = nd(rng);
    };
    for (int p = 0; p < 20; ++p) {
      fill();
      for (int l = 0; l < n_layer; ++l) c.store(l, 0, p, k.data(), v.data());
    }
    c.set_seq_len(0, 20);
    auto row = [&](int l, int seq, int h, int64_t pos, bool key) {
      const KvHeadView hv = c.view(l, seq, h);
      const size_t rb = key ? c.k_row_bytes() : c.v_row_bytes();
      const auto* base = static_cast<const uint8_t*>(key ? hv.k : hv.v);
      const int64_t stride = key ? hv.block_stride : hv.v_block_stride;
      const uint8_t* at = base + hv.blocks[pos / kB] * stride + (pos % kB) * static_cast<int64_t>(rb);
      return std::vector<uint8_t>(at, at + rb);
    };
    std::vector<std::vector<uint8_t>> before;
    for (int l = 0; l < n_layer; ++l)
      for (int h = 0; h < n_kv; ++h)
        for (int64_t p = 0; p < 20; ++p) {
          before.push_back(row(l, 0, h, p, true));
          before.push_back(row(l, 0, h, p, false));
        }
    c.share_prefix(1, 0, 18);
    // The shared partial block of every (layer, head) is copied first.
    EXPECT_EQ(c.blocks_needed(1, 19), n_layer * n_kv);
    fill();
    for (int l = 0; l < n_layer; ++l) c.store(l, 1, 18, k.data(), v.data());
    c.set_seq_len(1, 19);
    EXPECT_NE(c.block_table(1)[1], c.block_table(0)[1]);
    EXPECT_EQ(c.block_table(1)[0], c.block_table(0)[0]);
    size_t i = 0;
    for (int l = 0; l < n_layer; ++l)
      for (int h = 0; h < n_kv; ++h)
        for (int64_t p = 0; p < 20; ++p) {
          EXPECT_EQ(row(l, 0, h, p, true), before[i]) << dtype_name(kt) << " seq 0 key " << p;
          EXPECT_EQ(row(l, 0, h, p, false), before[i + 1]) << dtype_name(vt) << " seq 0 value " << p;
          if (p < 18) {
            EXPECT_EQ(row(l, 1, h, p, true), before[i]) << dtype_name(kt) << " seq 1 key " << p;
            EXPECT_EQ(row(l, 1, h, p, false), before[i + 1]) << dtype_name(vt) << " seq 1 value " << p;
          }
          i += 2;
        }
  }
}

TEST(KvCache, ATypeWhoseBlockDoesNotDivideTheHeadDimensionNamesTheTypesThatFit) {
  try {
    KvCache c(KvShape{1, 1, 48, 16, 1}, DType::F16, DType::Q4_0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("q4_0"), std::string::npos) << what;
    EXPECT_NE(what.find("48"), std::string::npos) << what;
    EXPECT_NE(what.find("types that fit: f32, f16, bf16"), std::string::npos) << what;
  }
  // Bytes: K F16 rows of 64 values, V Q4_0 rows (two 18-byte blocks), one block of kBlock positions.
  KvCache c(KvShape{1, 1, 64, 16, 1}, DType::F16, DType::Q4_0);
  EXPECT_EQ(c.bytes(), static_cast<size_t>(KvCache::kBlock) * (64 * 2 + 2 * 18));
}

}  // namespace kestrel

#include "kernels/hadamard.h"

namespace kestrel {

TEST(Hadamard, IsItsOwnInverseAndKeepsDotProducts) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  for (int block : {64, 128}) {
    std::vector<float> a(256), b(256);
    for (auto& x : a) x = nd(rng);
    for (auto& x : b) x = nd(rng);
    std::vector<float> ra = a, rb = b;
    kernels::hadamard_chunks(ra.data(), 256, block);
    kernels::hadamard_chunks(rb.data(), 256, block);
    double dot = 0, rdot = 0, norm = 0;
    for (int i = 0; i < 256; ++i) {
      dot += double{a[i]} * b[i];
      rdot += double{ra[i]} * rb[i];
      norm += std::fabs(double{a[i]} * b[i]);
    }
    // log2(block) + 1 roundings per element: relative 8 * 2^-24 each, summed.
    EXPECT_NEAR(rdot, dot, 16 * 9.0 / (1 << 24) * norm) << block;
    kernels::hadamard_chunks(ra.data(), 256, block);
    for (int i = 0; i < 256; ++i) EXPECT_NEAR(ra[i], a[i], 1e-5) << block << " " << i;
  }
  EXPECT_EQ(kernels::k_rotation_block(true, 64), 64);
  EXPECT_EQ(kernels::k_rotation_block(true, 128), 128);
  EXPECT_EQ(kernels::k_rotation_block(true, 192), 64);
  EXPECT_EQ(kernels::k_rotation_block(true, 80), 0);
  EXPECT_EQ(kernels::k_rotation_block(false, 128), 0);
  EXPECT_EQ(kernels::v_rotation_block(true, 128), 64);
}

// A rotated q8_0 cache (llama.cpp's default for quantized KV): attention through
// the kernel set (q rotated like K, the output rotated back) against a double
// attention over the original rows, within the q8_0 rounding of the rotated
// rows: scores move by at most scale * sum|q'| * amax(k')/254 (+ the same for
// q's own rounding), the output by the softmax bound plus V's rounding rotated
// back (at most sqrt(64) times a rotated element's error).
TEST(KvCache, RotatedQuantizedCacheAttendsToTheOriginalRows) {
  constexpr int d = 64, n_pos = 40;
  for (bool tiled : {false, true}) {
    KvCache cache(KvShape{1, 1, d, 64, 1}, DType::Q8_0, DType::Q8_0);
    ASSERT_EQ(cache.k_rotation(), 64);
    ASSERT_EQ(cache.v_rotation(), 64);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    std::vector<std::vector<float>> K, V;
    double kmax = 0, vmax = 0;
    for (int p = 0; p < n_pos; ++p) {
      std::vector<float> k(d), v(d);
      for (auto& x : k) x = 2 * nd(rng);
      for (auto& x : v) x = nd(rng);
      k[3] = 20.0f;  // an outlier channel, what the rotation is for
      cache.store(0, 0, p, k.data(), v.data());
      std::vector<float> rk = k, rv = v;
      kernels::hadamard_chunks(rk.data(), d, 64);
      kernels::hadamard_chunks(rv.data(), d, 64);
      for (int c = 0; c < d; ++c) {
        kmax = std::max(kmax, double{std::fabs(rk[c])});
        vmax = std::max(vmax, double{std::fabs(v[c])});
        vmax = std::max(vmax, double{std::fabs(rv[c])});
      }
      K.push_back(k);
      V.push_back(v);
    }
    cache.set_seq_len(0, n_pos);
    std::vector<float> q(d), out(d);
    for (auto& x : q) x = nd(rng);
    std::vector<float> rq = q;
    kernels::hadamard_chunks(rq.data(), d, 64);
    double qsum = 0, ksum = 0, qmax = 0;
    for (int c = 0; c < d; ++c) {
      qsum += std::fabs(rq[c]);
      qmax = std::max(qmax, double{std::fabs(rq[c])});
    }
    for (const auto& k : K) {
      double s = 0;
      for (float x : k) s += std::fabs(x);
      ksum = std::max(ksum, s * std::sqrt(double{d}));  // sum|k'| <= sqrt(d) ||k||_2 <= sqrt(d) sum|k|
    }
    const double scale = 1.0 / 8.0;
    const double delta = scale * (qsum * kmax / 254 + ksum * qmax / 254);
    const double tol = (std::exp(2 * delta) - 1) * vmax + 8.0 * vmax / 254 + 1e-5;
    const auto& set = kernels::attention_kernel_set(DType::Q8_0, kernels::AttentionAlgo::Exact, best_isa());
    if (tiled) {
      const float* qp[1] = {q.data()};
      float* op[1] = {out.data()};
      const int64_t vis[1] = {n_pos};
      std::vector<float> scratch(kernels::tile_scratch_floats(d));
      set.tile(head_rows(cache.view(0, 0, 0)), d, kernels::TileRows{qp, op, vis, 1}, 0.125f, scratch.data());
    } else {
      attend_head(cache, 0, 0, AttentionParams{1, 1, d, 0.125f}, 0, q.data(), n_pos, out.data(), set);
    }
    std::vector<double> s(n_pos), want(d, 0.0);
    double m = -1e300, l = 0;
    for (int p = 0; p < n_pos; ++p) {
      double dot = 0;
      for (int c = 0; c < d; ++c) dot += double{q[c]} * K[p][c];
      s[p] = dot * scale;
      m = std::max(m, s[p]);
    }
    for (int p = 0; p < n_pos; ++p) {
      const double w = std::exp(s[p] - m);
      l += w;
      for (int c = 0; c < d; ++c) want[c] += w * V[p][c];
    }
    for (int c = 0; c < d; ++c) ASSERT_NEAR(out[c], want[c] / l, tol) << (tiled ? "tile" : "row") << " c=" << c;
  }
}

}  // namespace kestrel
