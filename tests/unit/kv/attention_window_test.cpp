// The sliding window (AttentionParams::window, kv/attention.h window_rows): a
// windowed query over a long sequence must give the same bits as the same
// kernel over a cache that holds only the window's rows (stored from position
// 0), for every KV type pair's kernel set, every Isa the host runs, and both
// kernels: per query (attend_head, decode) and tiled (attend_batch with 64+
// tokens). The window starts mid-block, in a later layer and head, and in a
// second sequence whose blocks are not the first ones of the pool, so a wrong
// row id or stride shows. The unwindowed answer differs, so the test sees the window.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/attention_set.h"
#include "kv/attention.h"
#include "kv/attention_batch.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

constexpr int kLayers = 2, kKvHeads = 2, kHeads = 4, kD = 64, kPos = 150;
constexpr int kLayer = 1, kSeq = 1;

struct Rows {
  std::vector<float> k, v;  // [kPos][kKvHeads * kD]
};

Rows random_rows() {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Rows r;
  r.k.resize(size_t(kPos) * kKvHeads * kD);
  r.v.resize(r.k.size());
  for (auto& x : r.k) x = 2.0f * nd(rng);
  for (auto& x : r.v) x = nd(rng);
  return r;
}

// A cache holding rows [first, last] of `rows` at positions 0.. of kSeq (and
// something else in sequence 0, so kSeq's blocks are not the pool's first).
KvCache fill(const Rows& rows, int first, int last, DType kt, DType vt, Isa isa) {
  KvCache cache(KvShape{kLayers, kKvHeads, kD, 256, 2}, kt, vt, isa);
  std::vector<float> other(size_t(kKvHeads) * kD, 0.25f);
  for (int p = 0; p < 40; ++p)
    for (int l = 0; l < kLayers; ++l) cache.store(l, 0, p, other.data(), other.data());
  for (int p = first; p <= last; ++p)
    for (int l = 0; l < kLayers; ++l)
      cache.store(l, kSeq, p - first, &rows.k[size_t(p) * kKvHeads * kD], &rows.v[size_t(p) * kKvHeads * kD]);
  cache.set_seq_len(kSeq, last - first + 1);
  return cache;
}

TEST(AttentionWindow, SameBitsAsACacheOfTheWindowRowsOnly) {
  const Rows rows = random_rows();
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(size_t(kPos) * kHeads * kD);
  for (auto& x : q) x = nd(rng);
  ThreadPool pool(2);
  const int64_t window = 37;  // starts mid-block (kBlock 16)
  int checked = 0;
  for (DType kt : kernels::kv_types())
    for (DType vt : kernels::kv_types()) {
      if (!kernels::has_attention_kernels(kt, vt, kernels::AttentionAlgo::Exact)) continue;
      for (Isa isa : supported_isas()) {
        SCOPED_TRACE(std::string(dtype_name(kt)) + "/" + std::string(dtype_name(vt)) + " " +
                     std::string(isa_name(isa)));
        const auto& set = kernels::attention_kernel_set(kt, vt, kernels::AttentionAlgo::Exact, isa);
        const KvCache full = fill(rows, 0, kPos - 1, kt, vt, isa);
        AttentionParams ap{kHeads, kKvHeads, kD, 0.125f, window};
        AttentionParams plain = ap;
        plain.window = 0;

        // Per query: the last position, and one whose window starts at a block edge.
        for (int pos : {kPos - 1, 47 + 16}) {
          const int first = pos + 1 - int(window);
          const KvCache part = fill(rows, first, pos, kt, vt, isa);
          for (int h : {0, 3}) {
            const float* qh = &q[(size_t(pos) * kHeads + h) * kD];
            std::vector<float> got(kD), want(kD), unwindowed(kD);
            attend_head(full, kLayer, kSeq, ap, h, qh, pos + 1, got.data(), set);
            attend_head(part, kLayer, kSeq, plain, h, qh, window, want.data(), set);
            attend_head(full, kLayer, kSeq, plain, h, qh, pos + 1, unwindowed.data(), set);
            ASSERT_EQ(got, want) << "attend_head pos " << pos << " head " << h;
            ASSERT_NE(got, unwindowed);
          }
        }

        // Tiled: a 70-token batch at positions 80..149 (every window binds).
        const int t0 = 80, n = kPos - t0;
        std::vector<int32_t> seq(n, kSeq), pos(n);
        for (int i = 0; i < n; ++i) pos[i] = t0 + i;
        std::vector<float> out(size_t(n) * kHeads * kD);
        attend_batch(full, kLayer, ap, AttentionBatch{n, seq.data(), pos.data(), &q[size_t(t0) * kHeads * kD], out.data()},
                     pool, set);
        for (int i : {0, n / 2, n - 1}) {
          const int p = t0 + i, first = p + 1 - int(window);
          const KvCache part = fill(rows, first, p, kt, vt, isa);
          // The same tiled kernel over the window-only cache. A 64-token batch takes the tiled kernel; only the last token (this one) is compared.
          std::vector<int32_t> sseq(64, kSeq), spos(64);
          std::vector<float> sq(size_t(64) * kHeads * kD), sout(sq.size());
          for (int j = 0; j < 64; ++j) spos[j] = int32_t(window - 1);
          for (int j = 0; j < 64; ++j)
            std::copy_n(&q[size_t(p) * kHeads * kD], kHeads * kD, &sq[size_t(j) * kHeads * kD]);
          attend_batch(part, kLayer, plain, AttentionBatch{64, sseq.data(), spos.data(), sq.data(), sout.data()},
                       pool, set);
          for (int c = 0; c < kHeads * kD; ++c)
            ASSERT_EQ(out[size_t(i) * kHeads * kD + c], sout[size_t(63) * kHeads * kD + c])
                << "tiled token " << p << " element " << c;
        }
        ++checked;
      }
    }
  EXPECT_GE(checked, 2);
}

}  // namespace
}  // namespace kestrel
