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
  return centroids.data() + static_cast<size_t>(g) * spec.channels_per_group * spec.n_codes();
}

uint16_t* CqCodebook::group(int g) {
  return centroids.data() + static_cast<size_t>(g) * spec.channels_per_group * spec.n_codes();
}

CqCodebook make_cq_codebook(CqSpec spec, int head_dim) {
  check_cq_spec(spec, head_dim);
  CqCodebook book{spec, head_dim, {}, {}};
  book.centroids.assign(static_cast<size_t>(head_dim) * spec.n_codes(), 0);  // F16 +0
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
  const int c = book.spec.channels_per_group, k = book.spec.n_codes();
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
  const int c = book.spec.channels_per_group, k = book.spec.n_codes();
  const size_t n = static_cast<size_t>(c) * k;
  for (int g = 0; g < book.groups(); ++g) {
    std::vector<float> e(out.begin() + g * n, out.begin() + (g + 1) * n);
    map_centroids(e.data(), out.data() + g * n, c, k,
                  [&](const float* y, float* x) { cq_unwhiten(book.group_whitening(g), c, y, x); });
  }
  return out;
}

void enable_cq_whitening(CqCodebook& book) {
  const int c = book.spec.channels_per_group;
  book.whitening.assign(static_cast<size_t>(book.groups()) * c * c, 0.0f);
  for (int g = 0; g < book.groups(); ++g)
    for (int i = 0; i < c; ++i) book.whitening[(static_cast<size_t>(g) * c + i) * c + i] = 1.0f;
}

int learn_cq_group(CqCodebook& book, int g, std::span<const float> samples, uint64_t seed, int max_iterations,
                   const float* whitening, std::span<const float> weights) {
  const int c = book.spec.channels_per_group, d = book.head_dim, k = book.spec.n_codes();
  const size_t n = samples.size() / static_cast<size_t>(d);
  if (n == 0) fail("CQ: no sample rows to learn a codebook from");
  if (whitening && !book.whitened()) fail("CQ: learning with a whitening needs enable_cq_whitening first");
  if (!weights.empty() && weights.size() != n) fail("CQ: ", weights.size(), " weights for ", n, " sample rows");
  // The group's channels of every row, contiguous (and whitened): [n][c].
  std::vector<float> points(n * static_cast<size_t>(c));
  for (size_t r = 0; r < n; ++r) {
    const float* x = samples.data() + r * d + static_cast<size_t>(g) * c;
    if (whitening)
      cq_whiten(whitening, c, x, points.data() + r * c);
    else
      std::copy(x, x + c, points.data() + r * c);
  }
  KMeansResult km = kmeans(points, c, k, seed, max_iterations, weights);
  // Kept where k-means left them: E = W C for a whitened group.
  round_to_f16(km.centroids.data(), book.group(g), static_cast<size_t>(c) * k,
               whitening ? "whitened centroid" : "centroid");
  if (whitening)
    std::copy(whitening, whitening + static_cast<size_t>(c) * c,
              book.whitening.begin() + static_cast<ptrdiff_t>(g) * c * c);
  return km.iterations;
}

CqCodebook learn_cq_codebook(CqSpec spec, int head_dim, std::span<const float> samples, uint64_t seed,
                             int max_iterations) {
  CqCodebook book = make_cq_codebook(spec, head_dim);
  for (int g = 0; g < book.groups(); ++g) learn_cq_group(book, g, samples, mix_seed(seed, g), max_iterations);
  return book;
}

void cq_encode(const CqCodebook& book, kernels::CqEncodeFn encode, const float* row, uint8_t* codes) {
  const int c = book.spec.channels_per_group, d = book.head_dim;
  if (!book.whitened()) return encode(row, book.centroids.data(), d, c, book.spec.n_codes(), codes);
  thread_local std::vector<float> whitened;
  whitened.resize(static_cast<size_t>(d));
  for (int g = 0; g < book.groups(); ++g) cq_whiten(book.group_whitening(g), c, row + g * c, whitened.data() + g * c);
  encode(whitened.data(), book.centroids.data(), d, c, book.spec.n_codes(), codes);
}

void cq_encode_row(const CqCodebook& book, std::span<const float> row, std::span<uint8_t> codes) {
  assert(row.size() == static_cast<size_t>(book.head_dim) && codes.size() == static_cast<size_t>(book.groups()));
  cq_encode(book, kernels::cq_kernels(best_isa()).encode, row.data(), codes.data());
}

void cq_decode_row(const CqCodebook& book, std::span<const uint8_t> codes, std::span<float> row) {
  assert(row.size() == static_cast<size_t>(book.head_dim) && codes.size() == static_cast<size_t>(book.groups()));
  kernels::cq_decode(codes.data(), book.centroids.data(), book.head_dim, book.spec.channels_per_group,
                     book.spec.n_codes(), row.data());
  if (book.whitened())
    kernels::cq_unwhiten_row(book.whitening.data(), book.head_dim, book.spec.channels_per_group, row.data());
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
