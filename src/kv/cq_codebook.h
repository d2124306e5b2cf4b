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

#include "core/fp16.h"
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

// One (layer, kv head, K or V)'s codebook. Centroids are held as F16 (IEEE
// half bits): a model's codebooks stay resident beside the cache, and in F32
// they weighed as much as a cq2 cache's codes of 8192 tokens (issue 14). F16
// is a second rounding of the learnt codebook (relative 2^-11 per value,
// against CQ's own error of ~0.15 per row); every kernel widens it exactly.
struct CqCodebook {
  CqSpec spec;
  int head_dim = 0;
  // F16 [groups][c][n_codes], planar as the kernels read it: the centroids C,
  // or, for a book learnt under a metric (`whitening` set), their whitened
  // image E = W C, where k-means left them and the encoder searches.
  std::vector<uint16_t> centroids;
  // Keys under the query metric (kv/cq_whitening.h), else empty: per group an
  // upper-triangular W ([groups][c][c], F32: c / n_codes of the centroids'
  // size). A row x is coded by the centroid nearest in |W x - E|^2, and the
  // attention reads E through W (kernels/cq_whiten.h): one codebook held, not
  // C for the attention and W C for the encoder (which cost a second
  // codebook's bytes: issue 14's 1/8 of the F16 bytes at 8k).
  std::vector<float> whitening;

  int groups() const { return spec.groups(head_dim); }
  bool whitened() const { return !whitening.empty(); }
  const float* group_whitening(int g) const {
    return whitening.data() + static_cast<size_t>(g) * spec.channels_per_group * spec.channels_per_group;
  }
  // [c][n_codes] of group g, F16 (whitened for a whitened book).
  const uint16_t* group(int g) const;
  uint16_t* group(int g);
  // A stored value (whitened for a whitened book).
  float value(int g, int code, int channel) const { return fp16_to_f32(group(g)[channel * spec.n_codes() + code]); }
  // What the book holds in memory: centroids and whitening.
  size_t bytes() const { return centroids.size() * sizeof(uint16_t) + whitening.size() * sizeof(float); }
};

// The resident bytes of one codebook of `spec` over head_dim channels without
// whitening: head_dim * n_codes F16 values (a closed form for the tests and
// for runtime/memory_footprint.h, which has no codebook at hand).
inline size_t cq_codebook_bytes(CqSpec spec, int head_dim) {
  return static_cast<size_t>(head_dim) * spec.n_codes() * sizeof(uint16_t);
}

// Rounds F32 centroids C ([groups][c][n_codes], in the rows' own space: as
// learnt or read from a version 1-2 sidecar) to the book's F16 ones (nearest
// even), through the book's whitening when it has one (E = W C, in F32, then
// rounded). Throws kestrel::Error naming the first value that is not finite
// in F16 (|x| >= 65520, infinite or NaN).
void set_cq_centroids(CqCodebook& book, std::span<const float> centroids);
// The stored F16 values widened ([groups][c][n_codes]; exact): C, or E for a
// whitened book. What a sidecar files.
std::vector<float> cq_stored_centroids_f32(const CqCodebook& book);
// Sets the stored F16 values from F32 ones (E for a whitened book: the
// version-3 sidecar's), rounded; throws as set_cq_centroids.
void set_cq_stored_centroids(CqCodebook& book, std::span<const float> stored);
// The centroids C in the rows' own space, F32 ([groups][c][n_codes]): the F16
// values widened, mapped back through W^-1 for a whitened book.
std::vector<float> cq_centroids_f32(const CqCodebook& book);

// An all-zero codebook of the right size.
CqCodebook make_cq_codebook(CqSpec spec, int head_dim);

// Gives `book` the query metric: identity whitening for every group (E = C),
// to be replaced group by group (learn_cq_group with a whitening).
void enable_cq_whitening(CqCodebook& book);

// Learns group g of `book` by k-means (k-means++ seeded with `seed`, then at
// most max_iterations Lloyd steps) over the group's channels of samples
// ([n][head_dim], n >= 1). Returns the Lloyd steps run. Groups are independent:
// threads may learn different groups of one codebook at once.
// With `whitening` (W, [c][c] upper triangular; the book enable_cq_whitening'd),
// k-means runs on the whitened points W x, and the group keeps its centroids
// there (E) with the whitening.
// k-means runs in F32; the group's centroids are then rounded to F16. Throws
// kestrel::Error when a centroid does not fit F16 (set_cq_centroids): not for
// calibration's rows, read from an F16 cache, whose means fit; only a
// whitening that maps them past 65504 could.
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
// codes: [groups] -> row: [head_dim], the centroids (C: through W^-1 for a
// whitened book).
void cq_decode_row(const CqCodebook& book, std::span<const uint8_t> codes, std::span<float> row);

// |row - decode(encode(row))| / |row| (0 for a zero row), in double.
double cq_relative_error(const CqCodebook& book, std::span<const float> row);

}  // namespace kestrel
