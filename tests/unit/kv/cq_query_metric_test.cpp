// The query metric of CQ keys (kv/cq_whitening.h, kv/cq_query_moments.h, the
// whitened codebooks of kv/cq_codebook.h and their sidecar): the whitening
// against the moment it factors, the encoder's assignment against a brute-force
// argmin of e^T H e, learning under the metric, the queries' moments against
// their definition, and the version 2 sidecar (and version 1 still read).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "gguf/gguf.h"
#include "kernels/cq_whiten.h"
#include "kv/attention_batch.h"
#include "kv/cq_codebook.h"
#include "kv/cq_query_moments.h"
#include "kv/cq_sidecar.h"
#include "kv/cq_whitening.h"
#include "platform/thread_pool.h"
#include "unit/error_text.h"
#include "unit/kv/cq_sidecar_fixtures.h"
#include "unit/random_values.h"

namespace kestrel {
namespace {

using kestrel::testing::cq_load_error;
using kestrel::testing::cq_temp_path;
using kestrel::testing::error_of;
using kestrel::testing::normal_values;
using kestrel::testing::small_cq_model;

// A moment sum_q q q^T of n anisotropic queries ([c][c]): channel i scaled by
// 1 + 3 i, and the channels mixed, so that H is neither diagonal nor flat.
std::vector<double> query_moment(int c, int n, uint32_t seed) {
  const std::vector<float> raw = normal_values(static_cast<size_t>(n) * c, seed);
  std::vector<double> h(static_cast<size_t>(c) * c, 0.0);
  for (int r = 0; r < n; ++r) {
    std::vector<double> q(static_cast<size_t>(c));
    for (int i = 0; i < c; ++i) q[i] = raw[r * c + i] * (1.0 + 3.0 * i) + 0.5 * raw[r * c + (i + 1) % c];
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j) h[i * c + j] += q[i] * q[j];
  }
  return h;
}

// e^T H e in double, H = W^T W.
double metric(const float* w, int c, const double* e) {
  double s = 0.0;
  for (int i = 0; i < c; ++i) {
    double y = 0.0;
    for (int j = 0; j < c; ++j) y += static_cast<double>(w[i * c + j]) * e[j];
    s += y * y;
  }
  return s;
}

TEST(CqWhitening, FactorsTheNormalizedMoment) {
  for (int c : {1, 4, 8}) {
    const std::vector<double> h = query_moment(c, 500, 3 + c);
    const double ridge = 0.05;
    const std::vector<float> w = cq_whitening_from_moment(h, c, ridge);
    EXPECT_NO_THROW(check_cq_whitening(w, c, "w"));
    double trace = 0.0;
    for (int i = 0; i < c; ++i) trace += h[i * c + i];
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j) {
        double wtw = 0.0;
        for (int k = 0; k < c; ++k) wtw += static_cast<double>(w[k * c + i]) * w[k * c + j];
        const double want = h[i * c + j] * c / trace + (i == j ? ridge : 0.0);
        EXPECT_NEAR(wtw, want, 1e-5 * c) << "c " << c << " (" << i << ", " << j << ")";
      }
  }
  // No query: the identity.
  const std::vector<float> w = cq_whitening_from_moment(std::vector<double>(16, 0.0), 4, 0.01);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(w[i * 4 + j], i == j ? 1.0f : 0.0f);
}

TEST(CqWhitening, UnwhitenUndoesWhiten) {
  const int c = 8;
  const std::vector<float> w = cq_whitening_from_moment(query_moment(c, 300, 9), c, 0.01);
  const std::vector<float> x = normal_values(c, 10);
  std::vector<float> y(c), back(c);
  cq_whiten(w.data(), c, x.data(), y.data());
  cq_unwhiten(w.data(), c, y.data(), back.data());
  for (int i = 0; i < c; ++i) EXPECT_NEAR(back[i], x[i], 1e-4) << i;
  // W^-T: the solution of W^T z = x, checked by multiplying back in double.
  std::vector<float> z(c);
  kernels::cq_unwhiten_transposed(w.data(), c, x.data(), z.data());
  for (int i = 0; i < c; ++i) {
    double wtz = 0.0;
    for (int j = 0; j <= i; ++j) wtz += static_cast<double>(w[j * c + i]) * z[j];
    EXPECT_NEAR(wtz, x[i], 1e-4) << i;
  }
}

TEST(CqWhitening, RefusesWhatIsNotAFactor) {
  std::vector<float> w = {1, 0.5f, 0, 2};
  EXPECT_NO_THROW(check_cq_whitening(w, 2, "w"));
  w[2] = 0.1f;  // below the diagonal
  EXPECT_NE(error_of([&] { check_cq_whitening(w, 2, "w"); }).find("w: the whitening is not upper triangular"),
            std::string::npos);
  w = {1, 0, 0, -1};
  EXPECT_NE(error_of([&] { check_cq_whitening(w, 2, "w"); }).find("diagonal entry is not positive"), std::string::npos);
  w = {1, std::numeric_limits<float>::infinity(), 0, 1};
  EXPECT_NE(error_of([&] { check_cq_whitening(w, 2, "w"); }).find("not finite"), std::string::npos);
}

// A codebook of random centroids C with each group's whitening from its own
// moment (held as W C).
CqCodebook whitened_codebook(CqSpec spec, int head_dim, uint32_t seed) {
  CqCodebook book = make_cq_codebook(spec, head_dim);
  enable_cq_whitening(book);
  const int c = spec.channels_per_group;
  for (int g = 0; g < book.groups(); ++g) {
    const std::vector<float> w = cq_whitening_from_moment(query_moment(c, 200, seed + g), c, 0.01);
    std::copy(w.begin(), w.end(), book.whitening.begin() + static_cast<ptrdiff_t>(g) * c * c);
  }
  set_cq_centroids(book, normal_values(book.centroids.size(), seed, 2.0f));
  return book;
}

// Every Isa's encoder assigns each group the code a brute-force search of
// (x - C)^T H (x - C) in double picks, with C the book's centroids in the rows'
// space (cq_centroids_f32: W^-1 of the held E), up to float rounding and ties.
TEST(CqQueryMetric, EncoderAssignsTheMetricsNearestCentroid) {
  for (const CqSpec spec : {CqSpec{4, 4}, CqSpec{8, 5}, CqSpec{2, 8}, kCq2, kCq1}) {
    const int d = 16, c = spec.channels_per_group, k = spec.n_codes();
    const CqCodebook book = whitened_codebook(spec, d, 100 + c);
    const std::vector<float> centroids = cq_centroids_f32(book);
    std::vector<uint8_t> codes(static_cast<size_t>(book.groups())), plain(codes.size());
    int differs_from_plain = 0;
    for (int row = 0; row < 50; ++row) {
      const std::vector<float> x = normal_values(d, 1000 + row, 2.0f);
      for (Isa isa : {Isa::Scalar, best_isa()}) {
        cq_encode(book, kernels::cq_kernels(isa).encode, x.data(), codes.data());
        for (int g = 0; g < book.groups(); ++g) {
          double best = std::numeric_limits<double>::infinity(), chosen = 0.0;
          int best_code = 0;
          for (int code = 0; code < k; ++code) {
            std::vector<double> e(static_cast<size_t>(c));
            for (int i = 0; i < c; ++i)
              e[i] = static_cast<double>(x[g * c + i]) - centroids[(static_cast<size_t>(g) * c + i) * k + code];
            const double m = metric(book.group_whitening(g), c, e.data());
            if (m < best) best = m, best_code = code;
            if (code == codes[g]) chosen = m;
          }
          EXPECT_LE(chosen, best * (1 + 1e-4) + 1e-6)
              << "best code " << best_code << cq_spec_name(spec) << " row " << row << " group " << g;
        }
      }
      CqCodebook unwhitened = make_cq_codebook(spec, d);
      set_cq_centroids(unwhitened, centroids);
      cq_encode(unwhitened, kernels::cq_kernels(Isa::Scalar).encode, x.data(), plain.data());
      differs_from_plain += codes != plain;
    }
    EXPECT_GT(differs_from_plain, 0) << cq_spec_name(spec) << ": the metric never changed a code";
  }
}

// Mean over rows of sum_g e_g^T H_g e_g for a codebook, the metric from `metric_book`.
double mean_metric_error(const CqCodebook& book, const CqCodebook& metric_book, const std::vector<float>& rows) {
  const int d = book.head_dim, c = book.spec.channels_per_group;
  const size_t n = rows.size() / d;
  std::vector<uint8_t> codes(static_cast<size_t>(book.groups()));
  std::vector<float> back(static_cast<size_t>(d));
  double sum = 0.0;
  for (size_t r = 0; r < n; ++r) {
    cq_encode_row(book, {rows.data() + r * d, static_cast<size_t>(d)}, codes);
    cq_decode_row(book, codes, back);
    for (int g = 0; g < book.groups(); ++g) {
      std::vector<double> e(static_cast<size_t>(c));
      for (int i = 0; i < c; ++i) e[i] = static_cast<double>(rows[r * d + g * c + i]) - back[g * c + i];
      sum += metric(metric_book.group_whitening(g), c, e.data());
    }
  }
  return sum / static_cast<double>(n);
}

// Learnt under the metric, a codebook codes rows it never saw with less error
// in the metric than one learnt in plain squared distance, and every fitted
// row's code is the metric's nearest centroid (what Lloyd converged to).
TEST(CqQueryMetric, LearningUnderTheMetricLowersItsError) {
  const CqSpec spec{4, 4};
  const int d = 8, c = 4;
  const CqCodebook shape = whitened_codebook(spec, d, 7);  // only its whitening is used
  const std::vector<float> fit = normal_values(size_t{2000} * d, 21), heldout = normal_values(size_t{500} * d, 22);
  CqCodebook plain = make_cq_codebook(spec, d), weighted = make_cq_codebook(spec, d);
  enable_cq_whitening(weighted);
  for (int g = 0; g < plain.groups(); ++g) {
    learn_cq_block(plain, g, fit, 5 + g, 30);
    learn_cq_block(weighted, g, fit, 5 + g, 30, shape.group_whitening(g));
  }
  EXPECT_EQ(weighted.whitening, shape.whitening);
  const double plain_error = mean_metric_error(plain, shape, heldout);
  const double weighted_error = mean_metric_error(weighted, shape, heldout);
  EXPECT_LT(weighted_error, 0.95 * plain_error) << "plain " << plain_error << ", weighted " << weighted_error;
  // A code decodes to C = W^-1 E, in the rows' space: whitened again, it is
  // the held (whitened) centroid.
  std::vector<uint8_t> codes(static_cast<size_t>(weighted.groups()));
  std::vector<float> row(static_cast<size_t>(d));
  for (int code = 0; code < spec.n_codes(); ++code) {
    std::fill(codes.begin(), codes.end(), static_cast<uint8_t>(code));
    cq_decode_row(weighted, codes, row);
    for (int g = 0; g < weighted.groups(); ++g) {
      float y[4];
      cq_whiten(weighted.group_whitening(g), c, row.data() + g * c, y);
      for (int i = 0; i < c; ++i) EXPECT_NEAR(y[i], weighted.value(g, code, i), 1e-5) << g << " " << code << " " << i;
    }
  }
}

// observe() adds q_g q_g^T of every (token, query head of the kv head's group).
TEST(CqQueryMoments, SumsEachKvHeadsQueries) {
  const int n_layer = 2, n_kv = 2, n_head = 6, d = 8, c = 4, n_tokens = 5;
  CqQueryMoments moments(n_layer, n_kv, d, c);
  KvCache cache(KvShape{n_layer, n_kv, d, 16}, DType::F16);
  const std::vector<float> q = normal_values(static_cast<size_t>(n_tokens) * n_head * d, 4);
  std::vector<int32_t> seq(n_tokens, 0), pos(n_tokens);
  for (int t = 0; t < n_tokens; ++t) pos[t] = t;
  std::vector<float> out(q.size());
  ThreadPool pool(2);
  const AttentionParams p{n_head, n_kv, d, 0.35f};
  moments.observe(cache, 1, p, AttentionBatch{n_tokens, seq.data(), pos.data(), q.data(), out.data()}, pool);
  EXPECT_EQ(moments.queries(0, 0), 0);
  EXPECT_EQ(moments.queries(1, 1), n_tokens * 3);
  for (int kv = 0; kv < n_kv; ++kv)
    for (int g = 0; g < d / c; ++g) {
      const std::span<const double> m = moments.moment(1, kv, g);
      for (int i = 0; i < c; ++i)
        for (int j = 0; j < c; ++j) {
          double want = 0.0;
          for (int t = 0; t < n_tokens; ++t)
            for (int h = 3 * kv; h < 3 * kv + 3; ++h)
              want += static_cast<double>(q[(t * n_head + h) * d + g * c + i]) * q[(t * n_head + h) * d + g * c + j];
          EXPECT_DOUBLE_EQ(m[i * c + j], want) << kv << " " << g << " " << i << " " << j;
        }
      for (double v : moments.moment(0, kv, g)) EXPECT_EQ(v, 0.0);
    }
}

// ---- The sidecar, versions 2 and 3 ----

CqCodebooks whitened_books(CqSpec spec, const CqModelInfo& m) {
  CqCodebooks books = make_cq_codebooks(spec, m);
  uint32_t seed = 300;
  for (CqCodebook& b : books.k) b = whitened_codebook(spec, m.k_head_dim, seed++);
  for (CqCodebook& b : books.v) set_cq_centroids(b, normal_values(b.centroids.size(), seed++));
  return books;
}

TEST(CqSidecar, WhitenedRoundTripIsVersion3) {
  const CqModelInfo m = small_cq_model();
  const CqCodebooks books = whitened_books(kCq2, m);
  const std::string path = cq_temp_path("whitened");
  save_cq_codebooks(path, books);
  EXPECT_EQ(gguf::File::open(path).get_u64("kestrel.cq.version"), 3u);
  const CqCodebooks back = load_cq_codebooks(path, m);
  std::filesystem::remove(path);
  for (size_t i = 0; i < books.k.size(); ++i) {
    EXPECT_EQ(back.k[i].centroids, books.k[i].centroids) << i;
    EXPECT_EQ(back.k[i].whitening, books.k[i].whitening) << i;
    EXPECT_EQ(back.v[i].centroids, books.v[i].centroids) << i;
    EXPECT_FALSE(back.v[i].whitened());
  }
}

// A sidecar without whitening is written as version 1, as builds before
// version 2 wrote (and read) it, and still loads.
TEST(CqSidecar, Version1StillLoads) {
  const CqModelInfo m = small_cq_model();
  CqCodebooks books = make_cq_codebooks(kCq1, m);
  uint32_t seed = 70;
  for (auto* list : {&books.k, &books.v})
    for (CqCodebook& b : *list) set_cq_centroids(b, normal_values(b.centroids.size(), seed++));
  const std::string path = cq_temp_path("v1");
  save_cq_codebooks(path, books);
  EXPECT_EQ(gguf::File::open(path).get_u64("kestrel.cq.version"), 1u);
  const CqCodebooks back = load_cq_codebooks(path, m);
  std::filesystem::remove(path);
  EXPECT_FALSE(back.k[0].whitened());
  EXPECT_EQ(back.key(1, 2).centroids, books.key(1, 2).centroids);
}

// Whitened values and exact layers round-trip too (version 3).
TEST(CqSidecar, WhitenedValuesAndExactLayersRoundTrip) {
  const CqModelInfo m = small_cq_model();
  CqCodebooks books = make_cq_codebooks(kCq1, m);
  uint32_t seed = 500;
  for (CqCodebook& b : books.k) set_cq_centroids(b, normal_values(b.centroids.size(), seed++));
  for (CqCodebook& b : books.v) b = whitened_codebook(kCq1, m.v_head_dim, seed++);
  books.exact_layers = 1;
  const std::string path = cq_temp_path("values");
  save_cq_codebooks(path, books);
  const CqCodebooks back = load_cq_codebooks(path, m);
  std::filesystem::remove(path);
  EXPECT_EQ(back.exact_layers, 1);
  for (size_t i = 0; i < books.v.size(); ++i) {
    EXPECT_FALSE(back.k[i].whitened());
    EXPECT_EQ(back.v[i].whitening, books.v[i].whitening) << i;
    EXPECT_EQ(back.v[i].centroids, books.v[i].centroids) << i;
  }
}

// Version 2 filed a whitened book's centroids in the rows' space (C, F16
// values): such a file loads as the F16 rounding of W C, the encoder centroids
// the builds that wrote it held.
TEST(CqSidecar, Version2WhitenedCentroidsLoadWhitened) {
  const CqModelInfo m = small_cq_model();
  const CqCodebooks books = whitened_books(kCq2, m);
  CqCodebooks as_v2 = books;  // the same codebooks, centroids in the rows' space, whitening filed beside
  for (CqCodebook& b : as_v2.k) {
    const std::vector<float> c = cq_centroids_f32(b);
    b.whitening.clear();
    set_cq_centroids(b, c);
  }
  gguf::Writer w = cq_sidecar_writer(as_v2);
  w.set_u32("kestrel.cq.version", 2);
  for (int layer = 0; layer < m.n_layer; ++layer)
    for (int head = 0; head < m.n_kv_head; ++head) {
      const CqCodebook& b = books.key(layer, head);
      w.add_tensor("cq.kw.blk." + std::to_string(layer) + ".head." + std::to_string(head), DType::F32,
                   {b.spec.channels_per_group, b.spec.channels_per_group, b.groups()},
                   gguf::bytes_of<float>(b.whitening));
    }
  const std::string path = cq_temp_path("v2_whitened");
  w.write(path);
  const CqCodebooks back = load_cq_codebooks(path, m);
  std::filesystem::remove(path);
  const int c = kCq2.channels_per_group, k = kCq2.n_codes();
  for (size_t i = 0; i < books.k.size(); ++i) {
    ASSERT_TRUE(back.k[i].whitened());
    EXPECT_EQ(back.k[i].whitening, books.k[i].whitening);
    const std::vector<float> filed = cq_stored_centroids_f32(as_v2.k[i]);
    for (int g = 0; g < back.k[i].groups(); ++g)
      for (int code = 0; code < k; ++code) {
        float x[4], y[4];
        for (int j = 0; j < c; ++j) x[j] = filed[(static_cast<size_t>(g) * c + j) * k + code];
        cq_whiten(books.k[i].group_whitening(g), c, x, y);
        for (int j = 0; j < c; ++j)
          EXPECT_EQ(back.k[i].centroids[(static_cast<size_t>(g) * c + j) * k + code], f32_to_fp16(y[j]))
              << i << " " << g << " " << code << " " << j;
      }
    EXPECT_EQ(back.v[i].centroids, books.v[i].centroids);
  }
}

TEST(CqSidecar, RefusesWhiteningItCannotUse) {
  const CqModelInfo m = small_cq_model();
  // Whitening tensors in a version 1 file: not one this build wrote.
  gguf::Writer w = cq_sidecar_writer(whitened_books(kCq2, m));
  w.set_u32("kestrel.cq.version", 1);
  std::string e = cq_load_error(w, m, "v1_whitened");
  EXPECT_NE(e.find("18 tensors, expected 12"), std::string::npos) << e;
  // A whitening with a negative diagonal.
  CqCodebooks books = whitened_books(kCq2, m);
  books.k[4].whitening[0] = -1.0f;
  e = cq_load_error(cq_sidecar_writer(books), m, "negative");
  EXPECT_NE(e.find("tensor cq.kw.blk.1.head.1: a whitening diagonal entry is not positive"), std::string::npos) << e;
  // More exact layers than the model has.
  w = cq_sidecar_writer(whitened_books(kCq2, m));
  w.set_u32("kestrel.cq.exact_layers", 3);
  e = cq_load_error(w, m, "exact");
  EXPECT_NE(e.find(": 3 exact layers, the model has 2"), std::string::npos) << e;
}

}  // namespace
}  // namespace kestrel
