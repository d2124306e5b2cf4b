// CQ codebooks: the spec, learning a codebook, encoding and decoding rows (kv/cq_codebook.h).
#include "kv/cq_codebook.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/cq_kernels.h"
#include "kv/cq_kmeans.h"
#include "kv/cq_whitening.h"

namespace kestrel {

CqSpec parse_cq_spec(std::string_view name) {
  if (name == "cq2") return kCq2;
  if (name == "cq1") return kCq1;
  fail("unknown CQ configuration '", name, "' (known: cq2 = 4 channels in 8 bits, cq1 = 8 channels in 8 bits)");
}

std::string cq_spec_name(CqSpec spec) {
  if (spec == kCq2) return "cq2";
  if (spec == kCq1) return "cq1";
  return "cq-" + std::to_string(spec.channels_per_group) + "c" + std::to_string(spec.bits) + "b";
}

void check_cq_spec(CqSpec spec, int head_dim) {
  if (spec.bits < 1 || spec.bits > 8) fail("CQ bits must be 1..8 (one byte code per group), got ", spec.bits);
  if (spec.channels_per_group < 1 || head_dim % spec.channels_per_group != 0)
    fail("CQ group of ", spec.channels_per_group, " channels does not divide the head dimension ", head_dim);
}

const uint16_t* CqCodebook::group(int g) const {
  return centroids.data() + static_cast<size_t>(g) * width() * spec.n_codes();
}

uint16_t* CqCodebook::group(int g) { return centroids.data() + static_cast<size_t>(g) * width() * spec.n_codes(); }

CqCodebook make_cq_codebook(CqSpec spec, int head_dim, int stages) {
  check_cq_spec(spec, head_dim);
  if (stages < 1 || head_dim % (spec.channels_per_group * stages) != 0)
    fail("CQ: ", stages, " residual stages of ", spec.channels_per_group, " channels do not divide the head dimension ",
         head_dim);
  CqCodebook book{spec, head_dim, stages, {}, {}};
  book.centroids.assign(static_cast<size_t>(head_dim) * stages * spec.n_codes(), 0);  // F16 +0
  return book;
}

namespace {

// from: [n] F32 -> to: [n] F16, refusing what F16 cannot hold (the first index
// that fails, for the message).
void round_to_f16(const float* from, uint16_t* to, size_t n, const char* what) {
  for (size_t i = 0; i < n; ++i) {
    to[i] = f32_to_fp16(from[i]);
    if ((to[i] & 0x7C00u) == 0x7C00u)  // exponent all ones: infinite or NaN
      fail("CQ: ", what, " value ", from[i], " at index ", i, " does not fit F16 (largest finite 65504)");
  }
}

// to = map(from) for each of a group's k centroids ([c][k] planar, as stored):
// map(x, y) writes the image of the centroid x into y ([c] each).
template <class Map>
void map_centroids(const float* from, float* to, int c, int k, Map&& map) {
  std::vector<float> x(static_cast<size_t>(c)), y(static_cast<size_t>(c));
  for (int code = 0; code < k; ++code) {
    for (int i = 0; i < c; ++i) x[i] = from[i * k + code];
    map(x.data(), y.data());
    for (int i = 0; i < c; ++i) to[i * k + code] = y[i];
  }
}

}  // namespace

void set_cq_stored_centroids(CqCodebook& book, std::span<const float> stored) {
  if (stored.size() != book.centroids.size())
    fail("CQ: ", stored.size(), " centroid values for a codebook of ", book.centroids.size());
  round_to_f16(stored.data(), book.centroids.data(), stored.size(), book.whitened() ? "whitened centroid" : "centroid");
}

void set_cq_centroids(CqCodebook& book, std::span<const float> centroids) {
  if (!book.whitened() || centroids.size() != book.centroids.size()) return set_cq_stored_centroids(book, centroids);
  const int c = book.width(), k = book.spec.n_codes();
  const size_t n = static_cast<size_t>(c) * k;
  std::vector<float> image(centroids.size());
  for (int g = 0; g < book.groups(); ++g)
    map_centroids(centroids.data() + g * n, image.data() + g * n, c, k,
                  [&](const float* x, float* y) { cq_whiten(book.group_whitening(g), c, x, y); });
  set_cq_stored_centroids(book, image);
}

std::vector<float> cq_stored_centroids_f32(const CqCodebook& book) {
  std::vector<float> out(book.centroids.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = fp16_to_f32(book.centroids[i]);
  return out;
}

std::vector<float> cq_centroids_f32(const CqCodebook& book) {
  std::vector<float> out = cq_stored_centroids_f32(book);
  if (!book.whitened()) return out;
  const int c = book.width(), k = book.spec.n_codes();
  const size_t n = static_cast<size_t>(c) * k;
  for (int g = 0; g < book.groups(); ++g) {
    std::vector<float> e(out.begin() + g * n, out.begin() + (g + 1) * n);
    map_centroids(e.data(), out.data() + g * n, c, k,
                  [&](const float* y, float* x) { cq_unwhiten(book.group_whitening(g), c, y, x); });
  }
  return out;
}

void enable_cq_whitening(CqCodebook& book) {
  const int c = book.width();
  book.whitening.assign(static_cast<size_t>(book.blocks()) * c * c, 0.0f);
  for (int b = 0; b < book.blocks(); ++b)
    for (int i = 0; i < c; ++i) book.whitening[(static_cast<size_t>(b) * c + i) * c + i] = 1.0f;
}

namespace {

// x -= centroid `code` of a stage ([w][k] planar, F32), and the inverse.
void subtract_centroid(float* x, const float* stage, int w, int k, int code) {
  for (int i = 0; i < w; ++i) x[i] -= stage[static_cast<size_t>(i) * k + code];
}
void add_centroid(float* x, const float* stage, int w, int k, int code) {
  for (int i = 0; i < w; ++i) x[i] += stage[static_cast<size_t>(i) * k + code];
}

// The weighted mean of the points of each code, written over the stage's
// centroids ([w][k]); a code no point (or only weight 0) chose keeps its centroid.
void recentre(const std::vector<float>& points, std::span<const float> weights, const std::vector<uint8_t>& codes,
              int w, int k, float* stage) {
  std::vector<double> sum(static_cast<size_t>(w) * k, 0.0), mass(static_cast<size_t>(k), 0.0);
  for (size_t r = 0; r < codes.size(); ++r) {
    const double wt = weights.empty() ? 1.0 : weights[r];
    mass[codes[r]] += wt;
    for (int i = 0; i < w; ++i) sum[static_cast<size_t>(i) * k + codes[r]] += wt * points[r * w + i];
  }
  for (int code = 0; code < k; ++code)
    if (mass[code] > 0.0)
      for (int i = 0; i < w; ++i)
        stage[static_cast<size_t>(i) * k + code] =
            static_cast<float>(sum[static_cast<size_t>(i) * k + code] / mass[code]);
}

}  // namespace

int learn_cq_block(CqCodebook& book, int b, std::span<const float> samples, uint64_t seed, int max_iterations,
                   const float* whitening, std::span<const float> weights) {
  const int c = book.width(), d = book.head_dim, k = book.spec.n_codes(), stages = book.stages;
  const size_t n = samples.size() / static_cast<size_t>(d);
  if (n == 0) fail("CQ: no sample rows to learn a codebook from");
  if (whitening && !book.whitened()) fail("CQ: learning with a whitening needs enable_cq_whitening first");
  if (!weights.empty() && weights.size() != n) fail("CQ: ", weights.size(), " weights for ", n, " sample rows");
  // The block's channels of every row, contiguous (and whitened): [n][c].
  std::vector<float> points(n * static_cast<size_t>(c));
  for (size_t r = 0; r < n; ++r) {
    const float* x = samples.data() + r * d + static_cast<size_t>(b) * c;
    if (whitening)
      cq_whiten(whitening, c, x, points.data() + r * c);
    else
      std::copy(x, x + c, points.data() + r * c);
  }
  // Stage by stage on what the earlier ones left (one stage: plain k-means).
  std::vector<std::vector<float>> centroids(static_cast<size_t>(stages));  // [stage][c][k]
  std::vector<std::vector<uint8_t>> codes(static_cast<size_t>(stages), std::vector<uint8_t>(n));
  std::vector<float> residual = points;
  int iterations = 0;
  for (int s = 0; s < stages; ++s) {
    KMeansResult km =
        kmeans(residual, c, k, s == 0 ? seed : mix_seed(seed, static_cast<uint64_t>(s)), max_iterations, weights);
    iterations += km.iterations;
    centroids[s] = std::move(km.centroids);
    if (stages == 1) break;
    for (size_t r = 0; r < n; ++r) {
      codes[s][r] = static_cast<uint8_t>(nearest_centroid(residual.data() + r * c, centroids[s].data(), c, k));
      subtract_centroid(residual.data() + r * c, centroids[s].data(), c, k, codes[s][r]);
    }
  }
  // Refinement: stage s against the rows minus every other stage's centroid.
  for (int sweep = 0; stages > 1 && sweep < kCqResidualSweeps; ++sweep)
    for (int s = 0; s < stages; ++s) {
      for (size_t r = 0; r < n; ++r) {
        float* x = residual.data() + r * c;
        add_centroid(x, centroids[s].data(), c, k, codes[s][r]);
        codes[s][r] = static_cast<uint8_t>(nearest_centroid(x, centroids[s].data(), c, k));
      }
      recentre(residual, weights, codes[s], c, k, centroids[s].data());
      for (size_t r = 0; r < n; ++r) subtract_centroid(residual.data() + r * c, centroids[s].data(), c, k, codes[s][r]);
    }
  // Kept where k-means left them: E = W C for a whitened block.
  for (int s = 0; s < stages; ++s)
    round_to_f16(centroids[s].data(), book.group(b * stages + s), static_cast<size_t>(c) * k,
                 whitening ? "whitened centroid" : "centroid");
  if (whitening)
    std::copy(whitening, whitening + static_cast<size_t>(c) * c,
              book.whitening.begin() + static_cast<ptrdiff_t>(b) * c * c);
  return iterations / stages;
}

CqCodebook learn_cq_codebook(CqSpec spec, int head_dim, std::span<const float> samples, uint64_t seed,
                             int max_iterations, int stages) {
  CqCodebook book = make_cq_codebook(spec, head_dim, stages);
  for (int b = 0; b < book.blocks(); ++b) learn_cq_block(book, b, samples, mix_seed(seed, b), max_iterations);
  return book;
}

void cq_encode(const CqCodebook& book, kernels::CqEncodeFn encode, const float* row, uint8_t* codes) {
  const int c = book.width(), d = book.head_dim, k = book.spec.n_codes();
  if (!book.whitened() && book.stages == 1) return encode(row, book.centroids.data(), d, c, k, codes);
  thread_local std::vector<float> whitened;  // the row as the encoder searches it (a stage's residual)
  if (book.whitened()) {
    whitened.resize(static_cast<size_t>(d));
    for (int b = 0; b < book.blocks(); ++b) cq_whiten(book.block_whitening(b), c, row + b * c, whitened.data() + b * c);
  } else {
    whitened.assign(row, row + d);
  }
  if (book.stages == 1) return encode(whitened.data(), book.centroids.data(), d, c, k, codes);
  // Greedy residual coding: each stage codes what the block's earlier ones
  // left. Then kCqEncodeSweeps passes give each stage in turn the code nearest
  // to the row minus the other stages' centroids (never a larger error: the
  // current code is among the candidates).
  const int s = book.stages;
  auto centroid = [&](int g, int i) { return fp16_to_f32(book.group(g)[static_cast<size_t>(i) * k + codes[g]]); };
  for (int g = 0; g < book.groups(); ++g) {
    float* x = whitened.data() + (g / s) * c;
    encode(x, book.group(g), c, c, k, codes + g);
    for (int i = 0; i < c; ++i) x[i] -= centroid(g, i);
  }
  for (int sweep = 0; sweep < kCqEncodeSweeps; ++sweep)
    for (int g = 0; g < book.groups(); ++g) {
      float* x = whitened.data() + (g / s) * c;
      for (int i = 0; i < c; ++i) x[i] += centroid(g, i);
      encode(x, book.group(g), c, c, k, codes + g);
      for (int i = 0; i < c; ++i) x[i] -= centroid(g, i);
    }
}

void cq_encode_row(const CqCodebook& book, std::span<const float> row, std::span<uint8_t> codes) {
  assert(row.size() == static_cast<size_t>(book.head_dim) && codes.size() == static_cast<size_t>(book.groups()));
  cq_encode(book, kernels::cq_kernels(best_isa()).encode, row.data(), codes.data());
}

void cq_decode_row(const CqCodebook& book, std::span<const uint8_t> codes, std::span<float> row) {
  assert(row.size() == static_cast<size_t>(book.head_dim) && codes.size() == static_cast<size_t>(book.groups()));
  kernels::cq_decode(codes.data(), book.centroids.data(), book.head_dim, book.spec.channels_per_group,
                     book.spec.n_codes(), row.data(), book.stages);
  if (book.whitened()) kernels::cq_unwhiten_row(book.whitening.data(), book.head_dim, book.width(), row.data());
}

double cq_relative_error(const CqCodebook& book, std::span<const float> row) {
  std::vector<uint8_t> codes(static_cast<size_t>(book.groups()));
  std::vector<float> back(row.size());
  cq_encode_row(book, row, codes);
  cq_decode_row(book, codes, back);
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < row.size(); ++i) {
    const double e = static_cast<double>(row[i]) - back[i];
    err += e * e;
    norm += static_cast<double>(row[i]) * row[i];
  }
  return norm > 0.0 ? std::sqrt(err / norm) : 0.0;
}

}  // namespace kestrel
