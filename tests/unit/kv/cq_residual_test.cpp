// CQ codebooks in residual stages (CqCodebook::stages, kv/cq_codebook.h): the
// greedy encoder and the decoder against a brute-force search written here,
// plain and whitened; learning that pays on correlated rows at the same bytes;
// and the sidecar (version 4) with its refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "gguf/gguf.h"
#include "kv/cq_codebook.h"
#include "kv/cq_sidecar.h"
#include "kv/cq_whitening.h"
#include "unit/error_text.h"
#include "unit/kv/cq_random_whitening.h"
#include "unit/kv/cq_sidecar_fixtures.h"
#include "unit/random_values.h"

namespace kestrel {
namespace {

using kestrel::testing::cq_load_error;
using kestrel::testing::cq_temp_path;
using kestrel::testing::error_of;
using kestrel::testing::normal_values;
using kestrel::testing::small_cq_model;

CqCodebook random_book(CqSpec spec, int head_dim, int stages, bool whitened, uint32_t seed) {
  CqCodebook book = make_cq_codebook(spec, head_dim, stages);
  std::mt19937 rng(seed + 1000);
  if (whitened) testing::random_cq_whitening(book, rng);
  set_cq_stored_centroids(book, normal_values(book.centroids.size(), seed, 0.7f));
  return book;
}

// The reference: per block, stage by stage, the code whose stored (whitened)
// centroid is nearest in squared distance (in double) to what the earlier
// stages left of W x; then kCqEncodeSweeps passes re-pick each stage's code
// against W x minus the other stages' centroids. The row back is W^-1 of the
// stages' sum.
void brute_force(const CqCodebook& book, const std::vector<float>& row, std::vector<uint8_t>& codes,
                 std::vector<double>& back) {
  const int w = book.width(), k = book.spec.n_codes(), s = book.stages;
  codes.assign(static_cast<size_t>(book.groups()), 0);
  back.assign(row.size(), 0.0);
  for (int b = 0; b < book.blocks(); ++b) {
    std::vector<float> x(row.begin() + b * w, row.begin() + (b + 1) * w), y(static_cast<size_t>(w));
    if (book.whitened()) {
      cq_whiten(book.block_whitening(b), w, x.data(), y.data());
      x = y;
    }
    // The nearest code of stage g to x minus every stage's centroid but g's
    // (only the earlier ones' in the greedy pass: the later ones are not chosen yet).
    auto pick = [&](int g, int chosen) {
      std::vector<double> target(x.begin(), x.end());
      for (int t = b * s; t < b * s + chosen; ++t)
        if (t != g)
          for (int i = 0; i < w; ++i) target[i] -= book.value(t, codes[t], i);
      double best = std::numeric_limits<double>::infinity();
      for (int code = 0; code < k; ++code) {
        double d = 0.0;
        for (int i = 0; i < w; ++i) d += std::pow(target[i] - book.value(g, code, i), 2);
        if (d < best) best = d, codes[g] = static_cast<uint8_t>(code);
      }
    };
    for (int stage = 0; stage < s; ++stage) pick(b * s + stage, stage);
    for (int sweep = 0; sweep < kCqEncodeSweeps; ++sweep)
      for (int stage = 0; stage < s; ++stage) pick(b * s + stage, s);
    std::vector<float> e(static_cast<size_t>(w), 0.0f), c(static_cast<size_t>(w));
    for (int stage = 0; stage < s; ++stage)
      for (int i = 0; i < w; ++i) e[i] += book.value(b * s + stage, codes[b * s + stage], i);
    if (book.whitened()) cq_unwhiten(book.block_whitening(b), w, e.data(), c.data());
    for (int i = 0; i < w; ++i) back[b * w + i] = book.whitened() ? c[i] : e[i];
  }
}

}  // namespace

TEST(CqResidual, StagesShapeTheBook) {
  const CqCodebook book = make_cq_codebook(kCq1, 64, 4);
  EXPECT_EQ(book.groups(), 8);  // still one byte per 8 channels
  EXPECT_EQ(book.width(), 32);
  EXPECT_EQ(book.blocks(), 2);
  EXPECT_EQ(book.centroids.size(), size_t{64} * 4 * 256);
  EXPECT_EQ(book.bytes(), cq_codebook_bytes(kCq1, 64, 4));
  EXPECT_NE(error_of([] { make_cq_codebook(kCq1, 64, 3); }).find("3 residual stages of 8 channels do not divide"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_cq_codebook(kCq2, 16, 0); }).find("0 residual stages"), std::string::npos);
}

TEST(CqResidual, EncodesStageByStageAndDecodesTheSumOfTheStages) {
  for (bool whitened : {false, true})
    for (const auto& [spec, stages] : {std::pair{kCq1, 2}, std::pair{kCq1, 4}, std::pair{kCq2, 4}}) {
      SCOPED_TRACE(cq_spec_name(spec) + " x" + std::to_string(stages) + (whitened ? " whitened" : ""));
      const CqCodebook book = random_book(spec, 32, stages, whitened, 3 + stages);
      for (int trial = 0; trial < 20; ++trial) {
        const std::vector<float> row = normal_values(32, 100 + trial, 1.5f);
        std::vector<uint8_t> want_codes, got(static_cast<size_t>(book.groups()));
        std::vector<double> want;
        brute_force(book, row, want_codes, want);
        cq_encode_row(book, row, got);
        ASSERT_EQ(got, want_codes) << "trial " << trial;
        std::vector<float> back(32);
        cq_decode_row(book, got, back);
        for (int i = 0; i < 32; ++i) EXPECT_NEAR(back[i], want[i], 1e-4) << "trial " << trial << " channel " << i;
      }
    }
}

// Rows of rank 3 over 32 channels: one byte per 8 channels codes each group
// alone; four residual stages over the 32 channels follow the rows' joint
// structure and, at the same 4 bytes per row, leave a smaller error on rows
// k-means did not see. Learning is deterministic.
TEST(CqResidual, StagesBeatGroupsOnCorrelatedRowsAtTheSameBytes) {
  constexpr int kD = 32, kRows = 3000, kRank = 3;
  const std::vector<float> basis = normal_values(kRank * kD, 5);
  auto rows_from = [&](uint32_t seed) {
    const std::vector<float> z = normal_values(kRows * kRank, seed), noise = normal_values(kRows * kD, seed + 1, 0.02f);
    std::vector<float> rows(kRows * kD);
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < kD; ++c) {
        float x = noise[r * kD + c];
        for (int j = 0; j < kRank; ++j) x += z[r * kRank + j] * basis[j * kD + c];
        rows[r * kD + c] = x;
      }
    return rows;
  };
  const std::vector<float> fit = rows_from(10), held = rows_from(20);
  auto mean_error = [&](const CqCodebook& book) {
    double sum = 0.0;
    for (int r = 0; r < kRows; ++r) sum += cq_relative_error(book, std::span<const float>(held).subspan(r * kD, kD));
    return sum / kRows;
  };
  const CqCodebook groups = learn_cq_codebook(kCq1, kD, fit, 7, 25);
  const CqCodebook stages = learn_cq_codebook(kCq1, kD, fit, 7, 25, 4);
  const double e_groups = mean_error(groups), e_stages = mean_error(stages);
  EXPECT_LT(e_stages, 0.75 * e_groups) << "groups " << e_groups << ", stages " << e_stages;
  EXPECT_EQ(learn_cq_codebook(kCq1, kD, fit, 7, 25, 4).centroids, stages.centroids);
}

TEST(CqResidual, SidecarRoundTripAtVersion4) {
  const CqModelInfo m = small_cq_model();  // 2 layers x 3 kv heads x 16 channels
  CqCodebooks books = make_cq_codebooks(kCq2, m, 2);
  uint32_t seed = 40;
  for (CqCodebook& b : books.k) b = random_book(kCq2, 16, 2, true, seed++);
  for (CqCodebook& b : books.v) b = random_book(kCq2, 16, 2, false, seed++);
  const gguf::Writer w = cq_sidecar_writer(books);
  const std::string path = cq_temp_path("stages");
  w.write(path);
  const CqCodebooks back = load_cq_codebooks(path, m);
  const gguf::File f = gguf::File::open(path);
  EXPECT_EQ(f.get_u64("kestrel.cq.version"), 4u);
  EXPECT_EQ(f.get_u64("kestrel.cq.stages"), 2u);
  std::filesystem::remove(path);
  for (size_t i = 0; i < books.k.size(); ++i) {
    EXPECT_EQ(back.k[i].stages, 2);
    EXPECT_EQ(back.k[i].centroids, books.k[i].centroids) << "K " << i;
    EXPECT_EQ(back.k[i].whitening, books.k[i].whitening) << "K " << i;
    EXPECT_EQ(back.v[i].centroids, books.v[i].centroids) << "V " << i;
    EXPECT_FALSE(back.v[i].whitened());
  }
}

TEST(CqResidual, SidecarRefusesStagesThatDoNotFit) {
  const CqModelInfo m = small_cq_model();
  gguf::Writer w = cq_sidecar_writer(make_cq_codebooks(kCq2, m, 2));
  w.set_u32("kestrel.cq.stages", 3);  // 3 x 4 channels do not divide 16
  std::string e = cq_load_error(w, m, "stages3");
  EXPECT_NE(e.find("3 residual stages of 4 channels do not divide the head dimension 16"), std::string::npos) << e;
  w.set_u32("kestrel.cq.stages", 4);  // fits, but the tensors hold 2 stages
  e = cq_load_error(w, m, "stages4");
  EXPECT_NE(e.find("tensor cq.k.blk.0.head.0 is f32 [256, 8, 4], expected f32 [256, 16, 4]"), std::string::npos) << e;
  w.set_u32("kestrel.cq.stages", 0);
  e = cq_load_error(w, m, "stages0");
  EXPECT_NE(e.find("0 residual stages"), std::string::npos) << e;
}

}  // namespace kestrel
