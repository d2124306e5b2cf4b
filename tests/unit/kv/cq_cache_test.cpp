// The CQ KV types (kv=cq2, cq1; kv/kv_cache.h, kernels/cq_attention.h): codes
// stored through the codebooks, the F16 copies of the window and of the sink
// block kept and given back as the sequence grows, shared, evicted and cut
// back, and the attention over such a cache against a brute-force softmax over
// the rows it must read (the originals rounded to F16 where a copy is read,
// their decoded codes elsewhere), at every Isa bit for bit; for K and V of one
// CQ type and of two (kv=cq1/cq2, cq2/cq1), with books of one and of two
// residual stages.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/attention_set.h"
#include "kv/attention.h"
#include "kv/cq_codebook.h"
#include "kv/kv_cache.h"
#include "unit/error_text.h"
#include "unit/kv/cq_random_whitening.h"

namespace kestrel {
namespace {

using kestrel::testing::error_of;

constexpr int kB = KvCache::kBlock;
constexpr int kLayers = 2, kHeads = 2, kDim = 16;
constexpr int64_t kWindow = 32, kSink = 16;

std::vector<float> normal_values(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Codebooks of random centroids for every (layer, head), K and V; `whitened`:
// each under a random whitening too (held as W C: kv/cq_codebook.h); `stages`:
// residual stages (a block of 2 groups' channels with 2 codes).
std::shared_ptr<const CqCodebooks> random_books(CqSpec spec, uint32_t seed, bool whitened = false, int stages = 1) {
  CqModelInfo info{"test", kLayers, kHeads, kDim, kDim, 0, 0};
  CqCodebooks books = make_cq_codebooks(spec, info, stages);
  std::mt19937 rng(seed);
  for (auto* side : {&books.k, &books.v})
    for (CqCodebook& b : *side) {
      if (whitened) testing::random_cq_whitening(b, rng);
      set_cq_centroids(b, normal_values(b.centroids.size(), rng));
    }
  return std::make_shared<const CqCodebooks>(std::move(books));
}

CqSpec spec_of(DType t) { return t == DType::CQ2 ? kCq2 : kCq1; }

// The cache's books for K of k_type and V of v_type: one random set, or the K
// books of one and the V books of another (mixed_cq_codebooks).
std::shared_ptr<const CqCodebooks> books_for(DType k_type, DType v_type, uint32_t seed, bool whitened, int stages) {
  if (k_type == v_type) return random_books(spec_of(k_type), seed, whitened, stages);
  return std::make_shared<const CqCodebooks>(
      mixed_cq_codebooks(*random_books(spec_of(k_type), seed, whitened, stages),
                         *random_books(spec_of(v_type), seed + 1, whitened, stages)));
}

// K and V of one CQ type, and of two.
struct KvPair {
  DType k, v;
  std::string name() const {
    return k == v ? std::string(dtype_name(k)) : std::string(dtype_name(k)) + "/" + std::string(dtype_name(v));
  }
};
constexpr KvPair kPairs[] = {
    {DType::CQ2, DType::CQ2}, {DType::CQ1, DType::CQ1}, {DType::CQ1, DType::CQ2}, {DType::CQ2, DType::CQ1}};

struct CqFixture {
  KvPair types;
  std::shared_ptr<const CqCodebooks> books;
  KvCache cache;
  // Every stored token's K and V, [pos][kHeads * kDim], per layer.
  std::vector<std::vector<std::vector<float>>> k, v;

  explicit CqFixture(DType t, int n_seq = 1, int64_t n_ctx = 256, bool whitened = false)
      : CqFixture(KvPair{t, t}, n_seq, n_ctx, whitened) {}
  explicit CqFixture(KvPair kv, int n_seq = 1, int64_t n_ctx = 256, bool whitened = false, int stages = 1)
      : types(kv),
        books(books_for(kv.k, kv.v, 7, whitened, stages)),
        cache(KvShape{kLayers, kHeads, kDim, n_ctx, n_seq}, kv.k, kv.v, best_isa(), true, false,
              KvCq{books, kWindow, kSink}),
        k(kLayers),
        v(kLayers) {}

  // Stores positions [from, to) of seq 0 with random rows and notes the length.
  void fill(int64_t from, int64_t to, uint32_t seed, int seq = 0) {
    std::mt19937 rng(seed);
    for (int64_t p = from; p < to; ++p)
      for (int l = 0; l < kLayers; ++l) {
        std::vector<float> kr = normal_values(kHeads * kDim, rng), vr = normal_values(kHeads * kDim, rng);
        cache.store(l, seq, p, kr.data(), vr.data());
        if (seq != 0) continue;
        k[l].resize(std::max<size_t>(k[l].size(), static_cast<size_t>(p) + 1));
        v[l].resize(k[l].size());
        k[l][p] = kr;
        v[l][p] = vr;
      }
    cache.grow_seq_len(seq, to);
  }

  // The row the attention must read for a query over n rows, built from the
  // original: its F16 rounding when its block holds a copy and the row lies in
  // the sink block or the last kWindow rows, its decoded code otherwise.
  std::vector<float> expected_row(int layer, int head, int64_t r, int64_t n, bool key) const {
    const std::vector<float>& src = (key ? k : v)[layer][r];
    std::vector<float> x(src.begin() + head * kDim, src.begin() + (head + 1) * kDim);
    const KvHeadView view = cache.view(layer, 0, head);
    const bool copy = view.cq.win_ids[r / kB] >= 0 && (r < kSink || r >= n - kWindow);
    if (copy) {
      for (float& e : x) e = fp16_to_f32(f32_to_fp16(e));
      return x;
    }
    const CqCodebook& book = key ? books->key(layer, head) : books->value(layer, head);
    std::vector<uint8_t> codes(static_cast<size_t>(book.groups()));
    cq_encode_row(book, x, codes);
    cq_decode_row(book, codes, x);
    return x;
  }

  int64_t copies_per_head(int64_t rows) const {
    int64_t n = 0;
    for (int64_t b = 0; b * kB < rows; ++b) n += (b + 1) * kB <= kSink || (b + 1) * kB > rows - kWindow;
    return n;
  }
};

// fn(fixture) for every cache the tests below walk: K and V of one CQ type and
// of two, plain and whitened codebooks, of one stage and of two residual stages.
template <class Fn>
void for_each_cq_cache(Fn&& fn) {
  for (int stages : {1, 2})
    for (bool whitened : {false, true})
      for (const KvPair& t : kPairs) {
        SCOPED_TRACE(stages == 1 ? "one stage" : "two residual stages");
        SCOPED_TRACE(whitened ? "whitened codebooks" : "plain codebooks");
        SCOPED_TRACE(t.name());
        CqFixture f(t, 1, 256, whitened, stages);
        fn(f);
      }
}

}  // namespace

TEST(CqCache, CodesEveryRowAndKeepsF16CopiesOfTheSinkAndTheWindow) {
  for_each_cq_cache([&](CqFixture& f) {
    const KvPair& t = f.types;
    EXPECT_EQ(f.cache.k_row_bytes(), static_cast<size_t>(kDim / (t.k == DType::CQ2 ? 4 : 8)));
    EXPECT_EQ(f.cache.v_row_bytes(), static_cast<size_t>(kDim / (t.v == DType::CQ2 ? 4 : 8)));
    f.fill(0, 100, 1);
    // 100 rows: the sink block 0 and blocks 4..6 (rows 64..99 reach into the last 32).
    EXPECT_EQ(f.copies_per_head(100), 4);
    EXPECT_EQ(f.cache.copies_held(), kLayers * kHeads * 4);
    for (int l = 0; l < kLayers; ++l)
      for (int h = 0; h < kHeads; ++h) {
        const KvHeadView view = f.cache.view(l, 0, h);
        std::vector<float> got(kDim);
        for (int64_t r = 0; r < 100; ++r) {
          f.cache.key_row(view, r, 100, got.data());
          EXPECT_EQ(got, f.expected_row(l, h, r, 100, true)) << "layer " << l << " head " << h << " row " << r;
        }
      }
    // Growing gives back the copies that fall out of the window.
    f.fill(100, 160, 2);
    EXPECT_EQ(f.cache.copies_held(), kLayers * kHeads * f.copies_per_head(160));
    f.cache.clear();
    EXPECT_EQ(f.cache.copies_held(), 0);
    EXPECT_EQ(f.cache.used_blocks(), 0);
  });
}

TEST(CqCache, AttentionEqualsASoftmaxOverTheRowsItMustReadAtEveryIsa) {
  for_each_cq_cache(
      [&](CqFixture& f) {
        const KvPair& t = f.types;
        f.fill(0, 150, 3);
        const AttentionParams p{4, kHeads, kDim, 0.25f};
        std::mt19937 rng(11);
        for (int64_t n : {1, 15, 16, 40, 100, 150}) {
          for (int l = 0; l < kLayers; ++l)
            for (int head = 0; head < 4; ++head) {
              const int kvh = head / 2;
              const std::vector<float> q = normal_values(kDim, rng);
              // Brute force, in double.
              std::vector<double> s(static_cast<size_t>(n)), want(kDim, 0.0);
              double max = -INFINITY, z = 0;
              for (int64_t r = 0; r < n; ++r) {
                const std::vector<float> kr = f.expected_row(l, kvh, r, n, true);
                double dot = 0;
                for (int c = 0; c < kDim; ++c) dot += double{q[c]} * kr[c];
                s[r] = dot * p.scale;
                max = std::max(max, s[r]);
              }
              for (int64_t r = 0; r < n; ++r) {
                const double e = std::exp(s[r] - max);
                z += e;
                const std::vector<float> vr = f.expected_row(l, kvh, r, n, false);
                for (int c = 0; c < kDim; ++c) want[c] += e * vr[c];
              }
              std::vector<float> scalar(kDim);
              attend_head(f.cache, l, 0, p, head, q.data(), n, scalar.data(),
                          kernels::attention_kernel_set(t.k, t.v, kernels::AttentionAlgo::Exact, Isa::Scalar));
              for (int c = 0; c < kDim; ++c) EXPECT_NEAR(scalar[c], want[c] / z, 1e-5) << "n " << n << " channel " << c;
              for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
                if (!isa_supported(isa)) continue;
                std::vector<float> simd(kDim);
                attend_head(f.cache, l, 0, p, head, q.data(), n, simd.data(),
                            kernels::attention_kernel_set(t.k, t.v, kernels::AttentionAlgo::Exact, isa));
                EXPECT_EQ(simd, scalar) << isa_name(isa) << " n " << n;
              }
            }
        }
      });
}

// Prompt tiles decode the rows they see to F32 and run the F32 tile kernel:
// every query row of a tile (each seeing its own number of rows, across coded
// rows, the sink's and the window's copies) gets the brute-force softmax over
// its rows as the tile's last query reads them (the tile shares that query's
// window: kernels/cq_attention.h), within float rounding, at every Isa, for
// every pair of CQ types; the last query gets the row kernel's result.
TEST(CqCache, PromptTilesMatchASoftmaxOverTheDecodedRows) {
  for_each_cq_cache(
      [&](CqFixture& f) {
        const KvPair& t = f.types;
        f.fill(0, 150, 4);
        const KvHeadView view = f.cache.view(1, 0, 1);
        std::mt19937 rng(5);
        constexpr int kRows = 8;
        std::vector<std::vector<float>> q;
        std::vector<int64_t> visible;
        for (int i = 0; i < kRows; ++i) {
          q.push_back(normal_values(kDim, rng));
          visible.push_back(20 + 18 * i);  // 20 .. 146: coded rows, then the window
        }
        const float scale = 0.25f;
        for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
          if (!isa_supported(isa)) continue;
          const auto& set = kernels::attention_kernel_set(t.k, t.v, kernels::AttentionAlgo::Exact, isa);
          std::vector<std::vector<float>> tile_out(kRows, std::vector<float>(kDim));
          std::vector<const float*> qp;
          std::vector<float*> op;
          for (int i = 0; i < kRows; ++i) {
            qp.push_back(q[i].data());
            op.push_back(tile_out[i].data());
          }
          std::vector<float> scratch(kernels::tile_scratch_floats(kDim));
          set.tile(head_rows(view), kDim, kernels::TileRows{qp.data(), op.data(), visible.data(), kRows}, scale,
                   scratch.data());
          const int64_t last = visible.back();
          for (int i = 0; i < kRows; ++i) {
            const int64_t n = visible[i];
            std::vector<double> s(static_cast<size_t>(n)), want(kDim, 0.0);
            double max = -INFINITY, z = 0;
            for (int64_t r = 0; r < n; ++r) {
              const std::vector<float> kr = f.expected_row(1, 1, r, last, true);
              double dot = 0;
              for (int c = 0; c < kDim; ++c) dot += double{q[i][c]} * kr[c];
              s[r] = dot * scale;
              max = std::max(max, s[r]);
            }
            for (int64_t r = 0; r < n; ++r) {
              const double e = std::exp(s[r] - max);
              z += e;
              const std::vector<float> vr = f.expected_row(1, 1, r, last, false);
              for (int c = 0; c < kDim; ++c) want[c] += e * vr[c];
            }
            for (int c = 0; c < kDim; ++c)
              EXPECT_NEAR(tile_out[i][c], want[c] / z, 1e-5) << isa_name(isa) << " row " << i;
          }
          std::vector<float> row(kDim);
          set.row(head_rows(view), last, kDim, q.back().data(), scale, row.data());
          for (int c = 0; c < kDim; ++c) EXPECT_NEAR(tile_out.back()[c], row[c], 1e-5) << isa_name(isa);
        }
      });
}

TEST(CqCache, SharedPrefixesGetTheirOwnCopies) {
  CqFixture f(DType::CQ2, 2);
  f.fill(0, 100, 6);
  const int64_t held = f.cache.copies_held();
  f.cache.share_prefix(1, 0, 90);
  // Sequence 1 holds 90 rows: its own copies of those sequence 0 still had among them (blocks 0, 4, 5;
  // block 3 reaches into sequence 1's last 32 rows, but sequence 0 gave its copy back).
  EXPECT_EQ(f.cache.copies_held(), held + kLayers * kHeads * 3);
  // Writing sequence 1's partly filled shared block copies the codes, not sequence 0's rows.
  f.fill(90, 95, 7, 1);
  std::vector<float> got(kDim);
  for (int64_t r = 0; r < 100; ++r) {
    f.cache.key_row(f.cache.view(0, 0, 1), r, 100, got.data());
    EXPECT_EQ(got, f.expected_row(0, 1, r, 100, true)) << "row " << r;
  }
  // The shared rows read in sequence 1 as in sequence 0 (copies where both read copies, codes elsewhere).
  std::vector<float> want(kDim);
  for (int64_t r = 0; r < 90; ++r) {
    f.cache.key_row(f.cache.view(0, 1, 1), r, 95, got.data());
    f.cache.key_row(f.cache.view(0, 0, 1), r, 95, want.data());
    EXPECT_EQ(got, want) << "row " << r;
  }
  f.cache.clear_seq(1);
  EXPECT_EQ(f.cache.copies_held(), held);
}

TEST(CqCache, EvictionGivesBackTheBlockAndItsCopy) {
  CqFixture f(DType::CQ1);
  f.fill(0, 100, 8);
  const int64_t copies = f.cache.copies_held(), free = f.cache.free_blocks();
  // Block 4 (rows 64..79) holds a copy; block 2 does not.
  const KvBlockRef drop[] = {{0, 1, 4}, {1, 0, 2}};
  f.cache.evict(0, drop);
  EXPECT_EQ(f.cache.copies_held(), copies - 1);
  EXPECT_EQ(f.cache.free_blocks(), free + 2);
  EXPECT_EQ(f.cache.evicted_rows(0, 0, 1), kB);
}

TEST(CqCache, ACutIntoACodedBlockRebuildsItsCopyFromTheCodes) {
  CqFixture f(DType::CQ2);
  f.fill(0, 120, 9);
  f.cache.set_seq_len(0, 40);  // block 2 (rows 32..47) had given its copy back
  f.fill(40, 41, 10);
  std::vector<float> got(kDim);
  const KvHeadView view = f.cache.view(1, 0, 0);
  ASSERT_GE(view.cq.win_ids[2], 0);
  const CqCodebook& book = f.books->key(1, 0);
  for (int64_t r = 32; r < 40; ++r) {
    f.cache.key_row(view, r, 41, got.data());
    // The copy holds the decoded codes (rounded to F16): the original rows are gone.
    std::vector<float> x(f.k[1][r].begin(), f.k[1][r].begin() + kDim);
    std::vector<uint8_t> codes(static_cast<size_t>(book.groups()));
    cq_encode_row(book, x, codes);
    cq_decode_row(book, codes, x);
    for (float& e : x) e = fp16_to_f32(f32_to_fp16(e));
    EXPECT_EQ(got, x) << "row " << r;
  }
  f.cache.key_row(view, 40, 41, got.data());
  EXPECT_EQ(got, f.expected_row(1, 0, 40, 41, true));
}

TEST(CqCache, RefusesWhatItCannotStore) {
  const KvShape shape{kLayers, kHeads, kDim, 64, 1};
  const auto books2 = random_books(kCq2, 1);
  // The error of a cache of these types over these books (of `s`).
  auto refusal = [](DType k, DType v, std::shared_ptr<const CqCodebooks> books, KvShape s) {
    return error_of([&] { KvCache(s, k, v, best_isa(), true, false, KvCq{std::move(books)}); });
  };
  EXPECT_NE(error_of([&] { KvCache(shape, DType::CQ2, DType::CQ2); }).find("needs codebooks"), std::string::npos);
  EXPECT_NE(refusal(DType::CQ2, DType::F16, books2, shape).find("codes both K and V"), std::string::npos);
  EXPECT_NE(refusal(DType::Q8_0, DType::CQ2, books2, shape).find("codes both K and V"), std::string::npos);
  EXPECT_NE(refusal(DType::CQ1, DType::CQ1, books2, shape).find("needs cq1 codebooks, not cq2"), std::string::npos);
  // Mixed types need the keys' books of the K type and the values' of the V type.
  EXPECT_NE(refusal(DType::CQ2, DType::CQ1, books2, shape).find("cq1 values need cq1 codebooks, not cq2"),
            std::string::npos);
  const auto mixed = std::make_shared<const CqCodebooks>(mixed_cq_codebooks(*books2, *random_books(kCq1, 2)));
  EXPECT_NE(refusal(DType::CQ1, DType::CQ1, mixed, shape).find("needs cq1 codebooks, not cq2"), std::string::npos);
  EXPECT_NE(refusal(DType::CQ2, DType::CQ2, mixed, shape).find("cq2 values need cq2 codebooks, not cq1"),
            std::string::npos);
  EXPECT_NO_THROW(KvCache(shape, DType::CQ2, DType::CQ1, best_isa(), true, false, KvCq{mixed}));
  EXPECT_NE(refusal(DType::CQ2, DType::CQ2, books2, KvShape{kLayers + 1, kHeads, kDim, 64, 1}).find("do not fit"),
            std::string::npos);
  EXPECT_NE(refusal(DType::F16, DType::F16, books2, shape).find("only cq2 and cq1"), std::string::npos);
  EXPECT_NE(error_of([&] {
              kernels::attention_kernel_set(DType::CQ2, DType::F16, kernels::AttentionAlgo::Exact, best_isa());
            }).find("K any of cq2, cq1 with V any of cq2, cq1"),
            std::string::npos);
}

}  // namespace kestrel

namespace kestrel {
namespace {

// The sidecar's exact layers keep every row's F16 copy and read it: layer 0
// reads the originals rounded to F16 at every row, layer 1 its codes before
// the window, and the copies layer 1 gave back are its alone.
TEST(CqCache, ExactLayersReadTheirCopiesOnly) {
  CqCodebooks books = *random_books(kCq2, 7);
  books.exact_layers = 1;
  auto shared = std::make_shared<const CqCodebooks>(std::move(books));
  KvCache cache(KvShape{kLayers, kHeads, kDim, 256}, DType::CQ2, DType::CQ2, best_isa(), true, false,
                KvCq{shared, kWindow, kSink});
  std::mt19937 rng(3);
  std::vector<std::vector<float>> keys;
  const int64_t n = 120;
  for (int64_t p = 0; p < n; ++p) {
    keys.push_back(normal_values(kHeads * kDim, rng));
    const std::vector<float> v = normal_values(kHeads * kDim, rng);
    for (int l = 0; l < kLayers; ++l) cache.store(l, 0, p, keys.back().data(), v.data());
    cache.grow_seq_len(0, p + 1);
  }
  std::vector<float> row(kDim);
  for (int64_t r = 0; r < n; ++r) {
    cache.key_row(cache.view(0, 0, 1), r, n, row.data());
    for (int c = 0; c < kDim; ++c) ASSERT_EQ(row[c], fp16_to_f32(f32_to_fp16(keys[r][kDim + c]))) << r;
  }
  const int64_t coded = 40;  // past the sink block, before the window
  cache.key_row(cache.view(1, 0, 1), coded, n, row.data());
  std::vector<uint8_t> codes(kDim / 4);
  std::vector<float> decoded(kDim);
  cq_encode_row(shared->key(1, 1), std::span<const float>(keys[coded]).subspan(kDim, kDim), codes);
  cq_decode_row(shared->key(1, 1), codes, decoded);
  EXPECT_EQ(row, decoded);
  // Layer 0 holds a copy of all 8 blocks per head; layer 1 of the sink block and the 3 the window touches.
  EXPECT_EQ(cache.copies_held(), kHeads * (8 + 1 + 3));
}

// The codebooks are counted where the cache's bytes are (held, reserved,
// resident), once per cache however many sequences read them: 2 layers x 2 kv
// heads x (K, V) x 16 channels x 256 codes x 2 bytes (F16). Codes and copies
// from the shape: a block holds 16 rows of 16 / c code bytes for K and for V,
// a copy 16 rows of 16 F16 values for K and for V.
TEST(CqCache, BytesCountTheF16CodebooksOnce) {
  for (const KvPair& t : kPairs) {
    SCOPED_TRACE(t.name());
    CqFixture f(t, 2);
    const int64_t books = int64_t{kLayers} * kHeads * 2 * kDim * 256 * 2;
    const int64_t code_block = int64_t{kB} * (kDim / (t.k == DType::CQ2 ? 4 : 8) + kDim / (t.v == DType::CQ2 ? 4 : 8)),
                  copy = int64_t{kB} * kDim * 2 * 2;
    EXPECT_EQ(f.cache.codebook_bytes(), static_cast<size_t>(books));
    f.fill(0, 100, 1);
    f.fill(0, 40, 2, 1);
    const int64_t heads = kLayers * kHeads;
    const int64_t seq0 = heads * (7 * code_block + f.copies_per_head(100) * copy);  // 7 blocks of rows 0..99
    const int64_t seq1 = heads * (3 * code_block + f.copies_per_head(40) * copy);   // 3 blocks, all copied
    const int one[] = {0}, both[] = {0, 1};
    EXPECT_EQ(f.cache.bytes_held(one), seq0 + books);
    EXPECT_EQ(f.cache.bytes_held(both), seq0 + seq1 + books);
    // The pools: 2 sequences x 256 / 16 blocks per head, each with a copy slot.
    EXPECT_EQ(f.cache.bytes(), static_cast<size_t>(2 * 16 * heads * (code_block + copy) + books));
    EXPECT_GE(f.cache.resident_bytes(), static_cast<size_t>(seq0 + seq1 + books));
  }
  // Keys under the query metric hold their whitening (F32, [groups][c][c])
  // beside their one set of (whitened) centroids.
  CqCodebooks books = *random_books(kCq2, 3);
  for (CqCodebook& b : books.k) enable_cq_whitening(b);
  const int64_t plain = int64_t{kDim} * 256 * 2, whitening = int64_t{kDim / 4} * 4 * 4 * 4;
  EXPECT_EQ(books.bytes(), static_cast<size_t>(kLayers * kHeads * (2 * plain + whitening)));
  // Other types hold no codebook.
  KvCache f16(KvShape{kLayers, kHeads, kDim, 64}, DType::F16);
  EXPECT_EQ(f16.codebook_bytes(), 0u);
}

// A whitened codebook is what the cache encodes with: its rows' codes are cq_encode's.
TEST(CqCache, StoresThroughTheWhitening) {
  auto shared = random_books(kCq2, 9, true);
  KvCache cache(KvShape{kLayers, kHeads, kDim, 256}, DType::CQ2, DType::CQ2, best_isa(), true, false,
                KvCq{shared, 0, 0});
  std::mt19937 rng(4);
  const std::vector<float> k = normal_values(kHeads * kDim, rng), v = normal_values(kHeads * kDim, rng);
  cache.store(1, 0, 0, k.data(), v.data());
  cache.grow_seq_len(0, 1);
  const KvHeadView view = cache.view(1, 0, 0);
  std::vector<uint8_t> want(kDim / 4);
  cq_encode_row(shared->key(1, 0), std::span<const float>(k).subspan(0, kDim), want);
  const auto* stored = static_cast<const uint8_t*>(view.k) + view.blocks[0] * view.block_stride;
  EXPECT_EQ(std::vector<uint8_t>(stored, stored + kDim / 4), want);
}

}  // namespace
}  // namespace kestrel
