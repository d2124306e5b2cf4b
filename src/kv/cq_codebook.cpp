// CQ codebooks: the spec, learning a codebook, encoding and decoding rows (kv/cq_codebook.h).
#include "kv/cq_codebook.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "core/error.h"
#include "kernels/cq_kernels.h"
#include "kv/cq_kmeans.h"

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

const float* CqCodebook::group(int g) const {
  return centroids.data() + static_cast<size_t>(g) * spec.channels_per_group * spec.n_codes();
}

float* CqCodebook::group(int g) {
  return centroids.data() + static_cast<size_t>(g) * spec.channels_per_group * spec.n_codes();
}

CqCodebook make_cq_codebook(CqSpec spec, int head_dim) {
  check_cq_spec(spec, head_dim);
  CqCodebook book{spec, head_dim, {}};
  book.centroids.assign(static_cast<size_t>(head_dim) * spec.n_codes(), 0.0f);
  return book;
}

int learn_cq_group(CqCodebook& book, int g, std::span<const float> samples, uint64_t seed, int max_iterations) {
  const int c = book.spec.channels_per_group, d = book.head_dim;
  const size_t n = samples.size() / static_cast<size_t>(d);
  if (n == 0) fail("CQ: no sample rows to learn a codebook from");
  // The group's channels of every row, contiguous: [n][c].
  std::vector<float> points(n * static_cast<size_t>(c));
  for (size_t r = 0; r < n; ++r)
    for (int i = 0; i < c; ++i) points[r * c + i] = samples[r * d + static_cast<size_t>(g) * c + i];
  KMeansResult km = kmeans(points, c, book.spec.n_codes(), seed, max_iterations);
  std::copy(km.centroids.begin(), km.centroids.end(), book.group(g));
  return km.iterations;
}

CqCodebook learn_cq_codebook(CqSpec spec, int head_dim, std::span<const float> samples, uint64_t seed,
                             int max_iterations) {
  CqCodebook book = make_cq_codebook(spec, head_dim);
  for (int g = 0; g < book.groups(); ++g) learn_cq_group(book, g, samples, mix_seed(seed, g), max_iterations);
  return book;
}

void cq_encode_row(const CqCodebook& book, std::span<const float> row, std::span<uint8_t> codes) {
  assert(row.size() == static_cast<size_t>(book.head_dim) && codes.size() == static_cast<size_t>(book.groups()));
  const int c = book.spec.channels_per_group;
  for (int g = 0; g < book.groups(); ++g)
    codes[g] = static_cast<uint8_t>(nearest_centroid(row.data() + g * c, book.group(g), c, book.spec.n_codes()));
}

void cq_decode_row(const CqCodebook& book, std::span<const uint8_t> codes, std::span<float> row) {
  assert(row.size() == static_cast<size_t>(book.head_dim) && codes.size() == static_cast<size_t>(book.groups()));
  kernels::cq_decode(codes.data(), book.centroids.data(), book.head_dim, book.spec.channels_per_group,
                     book.spec.n_codes(), row.data());
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
