#pragma once
// Coupled quantization of the KV cache (CQ, PAPERS.md card 8; issue 14): the
// offline half. A head's head_dim channels are cut into groups of c
// consecutive channels; each group of a key (or value) row is replaced by the
// byte index of the nearest of 2^bits centroids learnt for that (layer, kv
// head, K or V, group) by k-means (kv/cq_kmeans.h). Coupling c channels in one
// code is what lets 8 bits cover 4 or 8 channels: the centroids follow the
// joint distribution of the group instead of a grid per channel.
//
// The attention kernels that read the codes are in kernels/cq_kernels.h; the
// file that carries a model's codebooks in kv/cq_sidecar.h.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cq_kernels.h"

namespace kestrel {

struct CqSpec {
  int channels_per_group = 4;  // c
  int bits = 8;                // per group and row: codes in [0, 2^bits), one byte
  int n_codes() const { return 1 << bits; }
  int groups(int head_dim) const { return head_dim / channels_per_group; }
  bool operator==(const CqSpec&) const = default;
};

// The paper's CQ-4c8b (2 bits per channel) and CQ-8c8b (1 bit per channel).
inline constexpr CqSpec kCq2{4, 8};
inline constexpr CqSpec kCq1{8, 8};

// "cq2" or "cq1"; throws kestrel::Error naming the known ones.
CqSpec parse_cq_spec(std::string_view name);
// "cq2", "cq1", else the paper's "cq-<c>c<b>b".
std::string cq_spec_name(CqSpec spec);
// Throws unless 1 <= bits <= 8 and channels_per_group >= 1 divides head_dim.
void check_cq_spec(CqSpec spec, int head_dim);

// One (layer, kv head, K or V)'s codebook.
struct CqCodebook {
  CqSpec spec;
  int head_dim = 0;
  std::vector<float> centroids;  // [groups][c][n_codes], planar as the kernels read it
  // Keys under the query metric (kv/cq_whitening.h), else empty: per group an
  // upper-triangular W ([groups][c][c]); a row is coded by the centroid nearest
  // in |W (x - C)|^2, found as W x against encoder_centroids = W C.
  std::vector<float> whitening;
  std::vector<float> encoder_centroids;  // [groups][c][n_codes] (cq_refresh_encoder)

  int groups() const { return spec.groups(head_dim); }
  bool whitened() const { return !whitening.empty(); }
  const float* group_whitening(int g) const {
    return whitening.data() + static_cast<size_t>(g) * spec.channels_per_group * spec.channels_per_group;
  }
  // [c][n_codes] of group g.
  const float* group(int g) const;
  float* group(int g);
  float value(int g, int code, int channel) const { return group(g)[channel * spec.n_codes() + code]; }
};

// An all-zero codebook of the right size.
CqCodebook make_cq_codebook(CqSpec spec, int head_dim);

// Gives `book` the query metric: identity whitening for every group, to be
// replaced group by group (learn_cq_group with a whitening).
void enable_cq_whitening(CqCodebook& book);
// encoder_centroids = W C for every group (after the centroids or whitening change).
void cq_refresh_encoder(CqCodebook& book);

// Learns group g of `book` by k-means (k-means++ seeded with `seed`, then at
// most max_iterations Lloyd steps) over the group's channels of samples
// ([n][head_dim], n >= 1). Returns the Lloyd steps run. Groups are independent:
// threads may learn different groups of one codebook at once.
// With `whitening` (W, [c][c] upper triangular; the book enable_cq_whitening'd),
// k-means runs on the whitened points W x, the centroids are brought back
// (W^{-1}), and the group's whitening and encoder centroids are set.
// With `weights` ([n]), k-means of the weighted error (kv/cq_kmeans.h).
int learn_cq_group(CqCodebook& book, int g, std::span<const float> samples, uint64_t seed, int max_iterations,
                   const float* whitening = nullptr, std::span<const float> weights = {});

// Every group, group g seeded with mix_seed(seed, g).
CqCodebook learn_cq_codebook(CqSpec spec, int head_dim, std::span<const float> samples, uint64_t seed,
                             int max_iterations);

// row: [head_dim] -> codes: [groups], the nearest centroid of each group
// (under the book's whitening when it has one; ties: the lowest code), through
// `encode` (the cache's encoder kernel). What the KV cache stores.
void cq_encode(const CqCodebook& book, kernels::CqEncodeFn encode, const float* row, uint8_t* codes);
// The same through the best Isa's encoder.
void cq_encode_row(const CqCodebook& book, std::span<const float> row, std::span<uint8_t> codes);
// codes: [groups] -> row: [head_dim], the centroids.
void cq_decode_row(const CqCodebook& book, std::span<const uint8_t> codes, std::span<float> row);

// |row - decode(encode(row))| / |row| (0 for a zero row), in double.
double cq_relative_error(const CqCodebook& book, std::span<const float> row);

}  // namespace kestrel
