// CQ (kv/cq_codebook.h, kv/cq_kmeans.h, kernels/cq_kernels.h, kv/cq_sidecar.h):
// codebooks, k-means, the lookup-table kernels against dequantize-then-compute
// and against their scalar twins, and the sidecar file with its refusals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "gguf/gguf.h"
#include "kernels/cq_kernels.h"
#include "kv/cq_codebook.h"
#include "kv/cq_kmeans.h"
#include "kv/cq_sidecar.h"
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

constexpr double kU = 0x1.0p-24;  // unit roundoff of float

std::vector<uint8_t> random_codes(size_t n, int n_codes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (uint8_t& x : v) x = static_cast<uint8_t>(rng() % static_cast<uint32_t>(n_codes));
  return v;
}

CqCodebook random_codebook(CqSpec spec, int head_dim, uint32_t seed) {
  CqCodebook book = make_cq_codebook(spec, head_dim);
  set_cq_centroids(book, normal_values(book.centroids.size(), seed));
  return book;
}

// ---- Specs and codebooks ----

TEST(CqSpec, NamesAndChecks) {
  EXPECT_EQ(parse_cq_spec("cq2"), (CqSpec{4, 8}));
  EXPECT_EQ(parse_cq_spec("cq1"), (CqSpec{8, 8}));
  EXPECT_EQ(cq_spec_name(kCq2), "cq2");
  EXPECT_EQ(cq_spec_name(CqSpec{2, 4}), "cq-2c4b");
  EXPECT_NE(error_of([] { parse_cq_spec("cq3"); }).find("known: cq2"), std::string::npos);
  EXPECT_NE(error_of([] {
              check_cq_spec(CqSpec{6, 8}, 64);
            }).find("does not divide the head dimension 64"),
            std::string::npos);
  EXPECT_NE(error_of([] { check_cq_spec(CqSpec{4, 9}, 64); }).find("1..8"), std::string::npos);
}

// A row made of centroids encodes to their codes and decodes to the same bits.
TEST(CqCodebook, CentroidsRoundTripExactly) {
  for (CqSpec spec : {kCq2, kCq1}) {
    const CqCodebook book = random_codebook(spec, 64, 1);
    const int groups = book.groups(), c = spec.channels_per_group;
    for (int trial = 0; trial < 50; ++trial) {
      const std::vector<uint8_t> codes = random_codes(static_cast<size_t>(groups), spec.n_codes(), 100 + trial);
      std::vector<float> row(64), back(64);
      for (int g = 0; g < groups; ++g)
        for (int i = 0; i < c; ++i) row[g * c + i] = book.value(g, codes[g], i);
      std::vector<uint8_t> got(static_cast<size_t>(groups));
      cq_encode_row(book, row, got);
      ASSERT_EQ(got, codes) << cq_spec_name(spec);
      cq_decode_row(book, got, back);
      ASSERT_EQ(std::memcmp(back.data(), row.data(), row.size() * sizeof(float)), 0);
      EXPECT_EQ(cq_relative_error(book, row), 0.0);
    }
  }
}

// Points within 0.01 of 16 centres 20 apart: k-means with k = 16 puts one
// centroid on each centre (k-means++ picks a point of an uncovered cluster with
// probability ~1 - 1e-6 at every step), within the noise's mean error.
TEST(CqKMeans, RecoversKnownCentres) {
  constexpr int kDim = 4, kK = 16, kPerCentre = 64;
  std::vector<float> centres(kK * kDim);
  for (int k = 0; k < kK; ++k)
    for (int i = 0; i < kDim; ++i) centres[k * kDim + i] = 20.0f * static_cast<float>((k >> i) & 1) + 5.0f * i;
  const std::vector<float> noise = normal_values(kK * kPerCentre * kDim, 7, 0.01f);
  std::vector<float> points(noise.size());
  for (int p = 0; p < kK * kPerCentre; ++p)
    for (int i = 0; i < kDim; ++i) points[p * kDim + i] = centres[(p % kK) * kDim + i] + noise[p * kDim + i];
  const KMeansResult r = kmeans(points, kDim, kK, 3, 50);
  EXPECT_TRUE(r.converged);
  std::vector<float> planar_centres(kK * kDim);
  for (int k = 0; k < kK; ++k)
    for (int i = 0; i < kDim; ++i) planar_centres[i * kK + k] = centres[k * kDim + i];
  std::vector<bool> hit(kK, false);
  for (int code = 0; code < kK; ++code) {
    float x[kDim];
    for (int i = 0; i < kDim; ++i) x[i] = r.centroids[i * kK + code];
    const int nearest = nearest_centroid(x, planar_centres.data(), kDim, kK);
    for (int i = 0; i < kDim; ++i) EXPECT_NEAR(x[i], centres[nearest * kDim + i], 0.01) << "centroid " << code;
    hit[nearest] = true;
  }
  for (int k = 0; k < kK; ++k) EXPECT_TRUE(hit[k]) << "centre " << k << " has no centroid";
}

TEST(CqKMeans, SeededAndDeterministic) {
  const std::vector<float> points = normal_values(500 * 4, 11);
  const std::vector<float> a = kmeans_pp_init(points, 4, 64, 5), b = kmeans_pp_init(points, 4, 64, 5);
  const std::vector<float> other = kmeans_pp_init(points, 4, 64, 6);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_NE(a, other);
  const KMeansResult ra = kmeans(points, 4, 64, 5, 10), rb = kmeans(points, 4, 64, 5, 10);
  EXPECT_EQ(ra.centroids, rb.centroids);
  EXPECT_EQ(ra.iterations, rb.iterations);
}

// Weighted k-means against closed forms: one code is the weighted mean of all
// points (brute force in double); points of weight 0 are never drawn as seeds
// and do not move the means; a point that outweighs all the others together
// is coded almost exactly, where the unweighted codebook leaves it an error.
TEST(CqKMeans, WeightedMeansSeedsAndPull) {
  constexpr int kDim = 4, kN = 300;
  const std::vector<float> points = normal_values(kN * kDim, 21);
  std::vector<float> weights(kN);
  for (int p = 0; p < kN; ++p) weights[p] = static_cast<float>(1 + p % 7);
  const KMeansResult one = kmeans(points, kDim, 1, 4, 5, weights);
  for (int i = 0; i < kDim; ++i) {
    double sum = 0.0, total = 0.0;
    for (int p = 0; p < kN; ++p) {
      sum += double(weights[p]) * points[p * kDim + i];
      total += weights[p];
    }
    EXPECT_NEAR(one.centroids[i], sum / total, 1e-6) << "channel " << i;
  }

  // Two tight clusters, and far outliers of weight 0.
  std::vector<float> clustered = normal_values(kN * kDim, 22, 0.1f);
  std::vector<float> w(kN, 1.0f);
  for (int p = 0; p < kN; ++p) {
    clustered[p * kDim] += p % 2 == 0 ? 10.0f : -10.0f;
    if (p % 10 == 3) {
      clustered[p * kDim + 1] += 1000.0f;
      w[p] = 0.0f;
    }
  }
  const std::vector<float> seeds = kmeans_pp_init(clustered, kDim, 8, 9, w);
  for (int code = 0; code < 8; ++code) EXPECT_LT(std::abs(seeds[1 * 8 + code]), 100.0f) << "seed " << code;
  const KMeansResult two = kmeans(clustered, kDim, 2, 9, 50, w);
  for (int side = 0; side < 2; ++side) {
    std::vector<double> mean(kDim, 0.0);
    int count = 0;
    for (int p = side; p < kN; p += 2)
      if (w[p] > 0) {
        for (int i = 0; i < kDim; ++i) mean[i] += clustered[p * kDim + i];
        ++count;
      }
    float x[kDim];
    for (int i = 0; i < kDim; ++i) x[i] = static_cast<float>(mean[i] / count);
    const int code = nearest_centroid(x, two.centroids.data(), kDim, 2);
    for (int i = 0; i < kDim; ++i) EXPECT_NEAR(two.centroids[i * 2 + code], x[i], 1e-4) << side << " " << i;
  }

  std::vector<float> heavy(kN, 1.0f);
  heavy[17] = 1e6f;
  auto error_of_17 = [&](const KMeansResult& r) {
    const float* x = points.data() + 17 * kDim;
    const int code = nearest_centroid(x, r.centroids.data(), kDim, 16);
    double e = 0.0;
    for (int i = 0; i < kDim; ++i) e += std::pow(double(r.centroids[i * 16 + code]) - x[i], 2);
    return std::sqrt(e);
  };
  const double unweighted = error_of_17(kmeans(points, kDim, 16, 5, 50));
  const double weighted = error_of_17(kmeans(points, kDim, 16, 5, 50, heavy));
  EXPECT_GT(unweighted, 0.05);
  EXPECT_LT(weighted, 1e-3 * unweighted);
}

// Fewer distinct points than codes: every point is a centroid, nothing is lost.
TEST(CqKMeans, FewerPointsThanCodes) {
  const std::vector<float> points = normal_values(10 * 4, 12);
  const KMeansResult r = kmeans(points, 4, 256, 1, 5);
  for (int p = 0; p < 10; ++p) {
    const int code = nearest_centroid(points.data() + p * 4, r.centroids.data(), 4, 256);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.centroids[i * 256 + code], points[p * 4 + i]);
  }
}

// Learnt on rows near 8 patterns per group, a codebook reconstructs them closely.
TEST(CqCodebook, LearnsAndEncodes) {
  constexpr int kD = 16, kRows = 400;
  const std::vector<float> patterns = normal_values(8 * kD, 21, 3.0f);
  const std::vector<float> noise = normal_values(kRows * kD, 22, 0.001f);
  std::vector<float> rows(kRows * kD);
  for (int r = 0; r < kRows; ++r)
    for (int c = 0; c < kD; ++c) rows[r * kD + c] = patterns[(r % 8) * kD + c] + noise[r * kD + c];
  const CqCodebook book = learn_cq_codebook(kCq2, kD, rows, 9, 25);
  const CqCodebook again = learn_cq_codebook(kCq2, kD, rows, 9, 25);
  EXPECT_EQ(book.centroids, again.centroids);
  for (int r = 0; r < kRows; ++r)
    EXPECT_LT(cq_relative_error(book, std::span<const float>(rows).subspan(r * kD, kD)), 1e-3) << "row " << r;
}

// ---- Kernels ----

struct Shape {
  CqSpec spec;
  int head_dim;
};
// cq2 and cq1 at head_dim 64 and 128, and odd shapes: 3 groups, 4 codes
// (fewer than 8: the AVX2 kernels hand them to their twins), and groups wider
// than 8 channels as residual stages' blocks make them (64, and 12: 8 + 4).
const Shape kShapes[] = {{kCq2, 64},         {kCq1, 64},           {kCq1, 128},        {CqSpec{8, 8}, 24},
                         {CqSpec{4, 2}, 32}, {CqSpec{64, 8}, 128}, {CqSpec{12, 8}, 48}};

// s_j = sum_g T[g][code] against q . decode(codes_j) in double. T[g][code] is c
// roundings (one product, c - 1 fmas) of sum_i q_i C_i, and s_j G - 1 more
// additions, each of a partial sum bounded by sum |q_i C_i|: the error is at
// most (c + G) u sum_ch |q_ch k_ch| to first order (one more u for the second).
TEST(CqKernels, ScoresMatchDequantizedDot) {
  for (const Shape& sh : kShapes) {
    const int c = sh.spec.channels_per_group, d = sh.head_dim, G = sh.spec.groups(d), K = sh.spec.n_codes();
    const CqCodebook book = random_codebook(sh.spec, d, 31);
    const std::vector<float> q = normal_values(d, 32);
    constexpr int kN = 37;
    const std::vector<uint8_t> codes = random_codes(kN * G, K, 33);
    for (Isa isa : supported_isas()) {
      const kernels::CqKernels& k = kernels::cq_kernels(isa);
      std::vector<float> table(static_cast<size_t>(G) * K), s(kN);
      k.score_table(q.data(), book.centroids.data(), d, c, K, table.data());
      k.scores(table.data(), codes.data(), kN, G, K, s.data());
      std::vector<float> row(d);
      for (int j = 0; j < kN; ++j) {
        cq_decode_row(book, std::span<const uint8_t>(codes).subspan(j * G, G), row);
        double want = 0.0, mag = 0.0;
        for (int ch = 0; ch < d; ++ch) {
          want += static_cast<double>(q[ch]) * row[ch];
          mag += std::fabs(static_cast<double>(q[ch]) * row[ch]);
        }
        ASSERT_LE(std::fabs(s[j] - want), (c + G + 1) * kU * mag)
            << isa_name(isa) << " " << cq_spec_name(sh.spec) << " d=" << d << " key " << j;
      }
    }
  }
}

// out_ch = sum_code B[code] C[ch][code] against sum_j p_j v_j[ch] in double. A
// bucket adds at most n weights (n - 1 roundings of sums <= sum p); the
// output is n_codes / 8 fmas per lane and 3 additions to fold the lanes. So
// |error| <= (n + n_codes / 8 + 3) u sum_j p_j |v_j[ch]| to first order.
TEST(CqKernels, BucketsMatchWeightedSum) {
  for (const Shape& sh : kShapes) {
    const int c = sh.spec.channels_per_group, d = sh.head_dim, G = sh.spec.groups(d), K = sh.spec.n_codes();
    const CqCodebook book = random_codebook(sh.spec, d, 41);
    constexpr int kN = 300;
    const std::vector<uint8_t> codes = random_codes(kN * G, K, 42);
    std::vector<float> p = normal_values(kN, 43);
    double total = 0.0;
    for (float& x : p) total += (x = std::exp(x));
    for (float& x : p) x = static_cast<float>(x / total);
    for (Isa isa : supported_isas()) {
      const kernels::CqKernels& k = kernels::cq_kernels(isa);
      std::vector<float> buckets(static_cast<size_t>(G) * K, 0.0f), out(d);
      k.add_buckets(p.data(), codes.data(), kN, G, K, buckets.data());
      k.buckets_out(buckets.data(), book.centroids.data(), d, c, K, out.data());
      std::vector<double> want(d, 0.0), mag(d, 0.0);
      std::vector<float> row(d);
      for (int j = 0; j < kN; ++j) {
        cq_decode_row(book, std::span<const uint8_t>(codes).subspan(j * G, G), row);
        for (int ch = 0; ch < d; ++ch) {
          want[ch] += static_cast<double>(p[j]) * row[ch];
          mag[ch] += std::fabs(static_cast<double>(p[j]) * row[ch]);
        }
      }
      for (int ch = 0; ch < d; ++ch)
        ASSERT_LE(std::fabs(out[ch] - want[ch]), (kN + K / 8 + 4) * kU * mag[ch])
            << isa_name(isa) << " " << cq_spec_name(sh.spec) << " d=" << d << " channel " << ch;
    }
  }
}

// The encoder's twin picks a nearest centroid: no code is nearer (in double).
TEST(CqKernels, EncodePicksTheNearestCentroid) {
  const kernels::CqKernels& ref = kernels::cq_kernels(Isa::Scalar);
  for (const Shape& sh : kShapes) {
    const int c = sh.spec.channels_per_group, d = sh.head_dim, G = sh.spec.groups(d), K = sh.spec.n_codes();
    const CqCodebook book = random_codebook(sh.spec, d, 61);
    for (int r = 0; r < 20; ++r) {
      const std::vector<float> x = normal_values(d, 400 + r);
      std::vector<uint8_t> codes(G);
      ref.encode(x.data(), book.centroids.data(), d, c, K, codes.data());
      for (int g = 0; g < G; ++g) {
        auto dist = [&](int code) {
          double s = 0;
          for (int i = 0; i < c; ++i) s += std::pow(double{x[g * c + i]} - book.value(g, code, i), 2);
          return s;
        };
        double best = dist(0);
        for (int code = 1; code < K; ++code) best = std::min(best, dist(code));
        EXPECT_LE(dist(codes[g]), best * (1 + 1e-5) + 1e-12) << "d=" << d << " group " << g;
      }
    }
  }
}

// The AVX2 kernels keep the twins' summation orders: the same bits, for every
// key count (8-key blocks and tails) and every shape, including those they
// hand back to the twins; F16 centroids widen exactly, so the F16 and F32
// encoders agree on the same values. Every Isa above Scalar is checked
// (AVX-512 runs the AVX2 kernels, as the table hands them out).
TEST(CqKernels, EveryIsaMatchesTheScalarTwinBitForBit) {
  const kernels::CqKernels& ref = kernels::cq_kernels(Isa::Scalar);
  std::vector<Isa> simd_isas;
  for (Isa isa : supported_isas())
    if (isa != Isa::Scalar) simd_isas.push_back(isa);
  if (simd_isas.empty()) GTEST_SKIP() << "this CPU has no AVX2: only the scalar kernels run here";
  for (Isa isa : simd_isas) {
    const kernels::CqKernels& simd = kernels::cq_kernels(isa);
    ASSERT_EQ(simd.isa, isa);
    for (const Shape& sh : kShapes) {
      const int c = sh.spec.channels_per_group, d = sh.head_dim, G = sh.spec.groups(d), K = sh.spec.n_codes();
      const std::string where = std::string(isa_name(isa)) + " " + cq_spec_name(sh.spec) + " d=" + std::to_string(d);
      const CqCodebook book = random_codebook(sh.spec, d, 51);
      const std::vector<float> q = normal_values(d, 52);
      std::vector<float> t_ref(static_cast<size_t>(G) * K), t_simd(t_ref.size());
      ref.score_table(q.data(), book.centroids.data(), d, c, K, t_ref.data());
      simd.score_table(q.data(), book.centroids.data(), d, c, K, t_simd.data());
      ASSERT_EQ(std::memcmp(t_ref.data(), t_simd.data(), t_ref.size() * sizeof(float)), 0) << "table " << where;
      for (int n : {0, 1, 7, 8, 9, 16, 33, 100}) {
        const std::vector<uint8_t> codes = random_codes(static_cast<size_t>(n) * G, K, 53 + n);
        std::vector<float> s_ref(n + 1, -1.0f), s_simd(n + 1, -1.0f);
        ref.scores(t_ref.data(), codes.data(), n, G, K, s_ref.data());
        simd.scores(t_ref.data(), codes.data(), n, G, K, s_simd.data());
        ASSERT_EQ(s_simd[n], -1.0f) << "wrote past the end";
        ASSERT_EQ(std::memcmp(s_ref.data(), s_simd.data(), n * sizeof(float)), 0) << "scores " << where << " n=" << n;
      }
      // Encoding, with ties made on purpose: code 3 repeats code 9 (and 200 where it exists),
      // so the lowest of equal codes must win in every lane order.
      CqCodebook tied = book;
      const int twin = K > 9 ? 9 : K - 1;  // the code made equal to code 3 (with 4 codes: code 3 itself)
      for (int g = 0; g < G && twin != 3; ++g)
        for (int i = 0; i < c; ++i) {
          tied.group(g)[i * K + twin] = tied.group(g)[i * K + 3];
          if (K > 200) tied.group(g)[i * K + 200] = tied.group(g)[i * K + 3];
        }
      const std::vector<float> tied_f32 = cq_centroids_f32(tied);  // k-means' F32 centroids
      for (int r = 0; r < 50; ++r) {
        std::vector<float> x = normal_values(d, 300 + r);
        if (r % 5 == 0 && K > 3)  // exactly on code 3 of every group
          for (int g = 0; g < G; ++g)
            for (int i = 0; i < c; ++i) x[g * c + i] = tied.value(g, 3, i);
        std::vector<uint8_t> e_ref(G), e_simd(G), f_ref(G), f_simd(G);
        ref.encode(x.data(), tied.centroids.data(), d, c, K, e_ref.data());
        simd.encode(x.data(), tied.centroids.data(), d, c, K, e_simd.data());
        ASSERT_EQ(e_ref, e_simd) << "encode " << where << " row " << r;
        ref.encode_f32(x.data(), tied_f32.data(), d, c, K, f_ref.data());
        simd.encode_f32(x.data(), tied_f32.data(), d, c, K, f_simd.data());
        ASSERT_EQ(f_ref, f_simd) << "encode_f32 " << where << " row " << r;
        // The same values in F32 and in F16 (widened exactly) give the same distances.
        ASSERT_EQ(f_ref, e_ref) << "encode_f32 vs encode " << where << " row " << r;
        if (r % 5 == 0 && K > 3)
          for (int g = 0; g < G; ++g) EXPECT_EQ(e_ref[g], 3) << "a tie went to a higher code";
      }
      const std::vector<float> buckets = normal_values(static_cast<size_t>(G) * K, 54);
      std::vector<float> o_ref(d), o_simd(d);
      ref.buckets_out(buckets.data(), book.centroids.data(), d, c, K, o_ref.data());
      simd.buckets_out(buckets.data(), book.centroids.data(), d, c, K, o_simd.data());
      ASSERT_EQ(std::memcmp(o_ref.data(), o_simd.data(), d * sizeof(float)), 0) << "buckets_out " << where;
    }
  }
}

// The recent rows' F16 copies: q . k in 8 lanes (d / 8 fmas each, 3 additions
// to fold: at most (d / 8 + 3) u sum |q k| to first order) and acc + p v (one
// fma: the exact result rounded once), on every Isa; AVX2 and the twin agree
// bit for bit, also at a width that is not a multiple of 8 (handed back).
TEST(CqKernels, CopyRowsMatchDoubleAndTheTwinsBits) {
  for (int d : {64, 128, 24, 20}) {
    const std::vector<float> q = normal_values(d, 70), acc0 = normal_values(d, 71), kf = normal_values(d, 72);
    std::vector<uint16_t> k(d);
    for (int ch = 0; ch < d; ++ch) k[ch] = f32_to_fp16(kf[ch]);
    const float p = 0.37f;
    std::vector<std::vector<float>> outs;
    std::vector<float> dots;
    for (Isa isa : supported_isas()) {
      const kernels::CqKernels& kk = kernels::cq_kernels(isa);
      double want = 0.0, mag = 0.0;
      for (int ch = 0; ch < d; ++ch) {
        want += static_cast<double>(q[ch]) * fp16_to_f32(k[ch]);
        mag += std::fabs(static_cast<double>(q[ch]) * fp16_to_f32(k[ch]));
      }
      const float dot = kk.copy_dot(q.data(), k.data(), d);
      EXPECT_LE(std::fabs(dot - want), (d / 8 + 4) * kU * mag) << isa_name(isa) << " d=" << d;
      std::vector<float> acc = acc0;
      kk.copy_axpy(p, k.data(), d, acc.data());
      for (int ch = 0; ch < d; ++ch) {
        const double exact = acc0[ch] + static_cast<double>(p) * fp16_to_f32(k[ch]);
        ASSERT_LE(std::fabs(acc[ch] - exact), kU * std::fabs(exact)) << isa_name(isa) << " d=" << d << " ch " << ch;
      }
      dots.push_back(dot);
      outs.push_back(acc);
    }
    for (size_t i = 1; i < dots.size(); ++i) {
      EXPECT_EQ(std::memcmp(&dots[i], &dots[0], sizeof(float)), 0) << "copy_dot d=" << d;
      EXPECT_EQ(outs[i], outs[0]) << "copy_axpy d=" << d;
    }
  }
}

// ---- The sidecar ----

CqCodebooks random_books(CqSpec spec, const CqModelInfo& m) {
  CqCodebooks books = make_cq_codebooks(spec, m);
  uint32_t seed = 60;
  for (auto* list : {&books.k, &books.v})
    for (CqCodebook& b : *list) set_cq_centroids(b, normal_values(b.centroids.size(), seed++));
  return books;
}

TEST(CqSidecar, RoundTrip) {
  const CqModelInfo m = small_cq_model();
  const CqCodebooks books = random_books(kCq1, m);
  const std::string path = cq_temp_path("roundtrip");
  save_cq_codebooks(path, books);
  const CqCodebooks back = load_cq_codebooks(path, m);
  std::filesystem::remove(path);
  EXPECT_EQ(back.spec, kCq1);
  EXPECT_EQ(back.model, m);
  ASSERT_EQ(back.k.size(), books.k.size());
  for (size_t i = 0; i < books.k.size(); ++i) {
    EXPECT_EQ(back.k[i].centroids, books.k[i].centroids) << "K " << i;
    EXPECT_EQ(back.v[i].centroids, books.v[i].centroids) << "V " << i;
  }
  EXPECT_EQ(back.value(1, 2).centroids, books.v[5].centroids);
}

TEST(CqSidecar, RefusesAnotherModel) {
  const CqModelInfo m = small_cq_model();
  const gguf::Writer w = cq_sidecar_writer(random_books(kCq2, m));
  CqModelInfo other = m;
  other.file_bytes += 1;
  std::string e = cq_load_error(w, other, "other_size");
  EXPECT_NE(e.find("was made for another model: file size 123456 (sidecar) vs 123457 (model)"), std::string::npos) << e;
  other = m;
  other.n_layer = 3;
  other.tensor_hash ^= 1;
  e = cq_load_error(w, other, "other_shape");
  EXPECT_NE(e.find("block_count 2 (sidecar) vs 3 (model)"), std::string::npos) << e;
  EXPECT_NE(e.find("tensor table hash"), std::string::npos) << e;
  EXPECT_EQ(e.find("file size"), std::string::npos) << e;
}

TEST(CqSidecar, RefusesTruncatedFile) {
  const CqModelInfo m = small_cq_model();
  const std::string path = cq_temp_path("truncated");
  save_cq_codebooks(path, random_books(kCq2, m));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  const std::string e = error_of([&] { load_cq_codebooks(path, m); });
  std::filesystem::remove(path);
  EXPECT_EQ(e.rfind("CQ sidecar " + path + ": ", 0), 0u) << e;
  EXPECT_NE(e.find("cq.v.blk.1.head.2"), std::string::npos) << e;  // the last tensor no longer fits
}

TEST(CqSidecar, RefusesWrongShape) {
  const CqModelInfo m = small_cq_model();
  // cq1 tensors ([256, 8, 2]) under cq2's metadata (which wants [256, 4, 4]).
  gguf::Writer w = cq_sidecar_writer(random_books(kCq1, m));
  w.set_u32("kestrel.cq.channels_per_group", 4);
  const std::string e = cq_load_error(w, m, "shape");
  EXPECT_NE(e.find("tensor cq.k.blk.0.head.0 is f32 [256, 8, 2], expected f32 [256, 4, 4] (cq2)"), std::string::npos)
      << e;
}

TEST(CqSidecar, RefusesUnknownVersion) {
  const CqModelInfo m = small_cq_model();
  gguf::Writer w = cq_sidecar_writer(random_books(kCq2, m));
  w.set_u32("kestrel.cq.version", 5);
  const std::string e = cq_load_error(w, m, "version");
  EXPECT_NE(e.find(": unknown version 5 (this build reads versions 1 to 4)"), std::string::npos) << e;
}

TEST(CqSidecar, RefusesAModelFile) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  const std::string e = cq_load_error(w, small_cq_model(), "model");
  EXPECT_NE(e.find("is not a CQ sidecar (general.architecture 'llama', expected 'kestrel-cq')"), std::string::npos)
      << e;
}

TEST(CqSidecar, DefaultPathNextToTheModel) {
  EXPECT_EQ(default_cq_sidecar_path("/m/SmolLM2-135M-Instruct.Q4_1.gguf", kCq2),
            "/m/SmolLM2-135M-Instruct.Q4_1.cq2.gguf");
  EXPECT_EQ(default_cq_sidecar_path("models/x.gguf", kCq1), "models/x.cq1.gguf");
  EXPECT_EQ(default_cq_sidecar_path("model.bin", kCq1), "model.bin.cq1.gguf");
  EXPECT_EQ(cq_sidecar_path("/m/a.gguf", kCq2, ""), "/m/a.cq2.gguf");
  EXPECT_EQ(cq_sidecar_path("/m/a.gguf", kCq2, "/elsewhere/b.gguf"), "/elsewhere/b.gguf");
}

// The fingerprint reads the metadata, the tensor table and the first bytes of
// each tensor: a renamed, reshaped or rewritten tensor changes the hash.
// kv=cq1/cq2 (or cq2/cq1) finds its values' books in the values' type's file unless named;
// one type reads one file, named for the keys.
TEST(CqSidecar, TheFilesOfTwoTypes) {
  const std::string m = "/m/x.gguf";
  auto paths = [&](CqSpec k, CqSpec v, const std::string& ko, const std::string& vo) {
    const CqSidecarPaths p = cq_sidecar_paths(m, k, v, ko, vo);
    return p.keys + " " + p.values;
  };
  EXPECT_EQ(paths(kCq1, kCq2, "", ""), "/m/x.cq1.gguf /m/x.cq2.gguf");
  EXPECT_EQ(paths(kCq1, kCq2, "/k.gguf", ""), "/k.gguf /m/x.cq2.gguf");
  EXPECT_EQ(paths(kCq1, kCq2, "/k.gguf", "/v.gguf"), "/k.gguf /v.gguf");
  EXPECT_EQ(paths(kCq2, kCq2, "/k.gguf", ""), "/k.gguf /k.gguf");
  EXPECT_EQ(paths(kCq2, kCq2, "", ""), "/m/x.cq2.gguf /m/x.cq2.gguf");
  EXPECT_EQ(paths(kCq2, kCq2, "", "/v.gguf"), "/m/x.cq2.gguf /v.gguf");
}

// A mixed set takes the keys' books of one and the values' of the other, is
// of one model, and is not written as one sidecar.
TEST(CqSidecar, MixedBooksTakeEachSideFromItsFile) {
  const CqModelInfo m = small_cq_model();
  CqCodebooks keys = random_books(kCq1, m), values = random_books(kCq2, m);
  values.exact_layers = 1;
  const CqCodebooks mixed = mixed_cq_codebooks(keys, values);
  EXPECT_EQ(mixed.spec, kCq1);
  EXPECT_EQ(mixed.value_spec(), kCq2);
  EXPECT_EQ(mixed.exact_layers, 1);
  for (size_t i = 0; i < mixed.k.size(); ++i) {
    EXPECT_EQ(mixed.k[i].centroids, keys.k[i].centroids);
    EXPECT_EQ(mixed.v[i].centroids, values.v[i].centroids);
  }
  EXPECT_NE(error_of([&] { (void)cq_sidecar_writer(mixed); }).find("cq1 keys with cq2 values are two sidecars"),
            std::string::npos);
  CqModelInfo other = m;
  other.tensor_hash += 1;
  EXPECT_NE(error_of([&] { (void)mixed_cq_codebooks(keys, random_books(kCq2, other)); }).find("different models"),
            std::string::npos);
}

TEST(CqSidecar, ModelInfoFromGguf) {
  auto model_file = [](const std::string& tensor, int64_t rows, uint8_t fill = 0) {
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.block_count", 4);
    w.set_u32("llama.embedding_length", 64);
    w.set_u32("llama.attention.head_count", 4);
    w.set_u32("llama.attention.head_count_kv", 2);
    w.add_tensor(tensor, DType::F32, {8, rows}, std::vector<uint8_t>(static_cast<size_t>(32 * rows), fill));
    return gguf::File::parse(w.to_bytes());
  };
  const CqModelInfo a = cq_model_info(model_file("token_embd.weight", 2));
  EXPECT_EQ(a.architecture, "llama");
  EXPECT_EQ(a.n_layer, 4);
  EXPECT_EQ(a.n_kv_head, 2);
  EXPECT_EQ(a.k_head_dim, 16);
  EXPECT_EQ(a.v_head_dim, 16);
  EXPECT_GT(a.file_bytes, 0u);
  EXPECT_EQ(cq_model_info(model_file("token_embd.weight", 2)), a);
  EXPECT_NE(cq_model_info(model_file("output.weight", 2)).tensor_hash, a.tensor_hash);
  EXPECT_NE(cq_model_info(model_file("token_embd.weight", 3)).tensor_hash, a.tensor_hash);
  EXPECT_NE(cq_model_info(model_file("token_embd.weight", 2, 1)).tensor_hash, a.tensor_hash);
}

}  // namespace
}  // namespace kestrel
