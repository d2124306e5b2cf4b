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
  // Residual stages (1: plain CQ). With s > 1 the head's channels are cut into
  // blocks of width() = c s, and a block's s codes each add a centroid of the
  // whole block to the previous ones' residual (residual VQ: the s codes of a
  // block are still s bytes, the type's c channels per byte on average).
  // Group g is stage g % s of block g / s. Why: k-means over 8 channels at a
  // time codes each group alone; a key head's channels are correlated (low
  // rank), and s centroids over c s channels follow that at the same bytes
  // (docs/cq_accuracy.md, session 34). The attention kernels do not change:
  // a stage's table reads its block of the query (kernels/cq_attention.cpp).
  int stages = 1;
  // F16 [groups][width()][n_codes], planar as the kernels read it: the centroids C,
  // or, for a book learnt under a metric (`whitening` set), their whitened
  // image E = W C, where k-means left them and the encoder searches.
  std::vector<uint16_t> centroids;
  // Keys under the query metric (kv/cq_whitening.h), else empty: per group an
  // upper-triangular W ([blocks()][width()][width()], F32, one per block: its
  // stages share it). A row x is coded by the centroid nearest in |W x - E|^2, and the
  // attention reads E through W (kernels/cq_whiten.h): one codebook held, not
  // C for the attention and W C for the encoder (which cost a second
  // codebook's bytes: issue 14's 1/8 of the F16 bytes at 8k).
  std::vector<float> whitening;

  int groups() const { return spec.groups(head_dim); }
  int width() const { return spec.channels_per_group * stages; }  // channels a centroid covers
  int blocks() const { return head_dim / width(); }
  bool whitened() const { return !whitening.empty(); }
  const float* block_whitening(int b) const { return whitening.data() + static_cast<size_t>(b) * width() * width(); }
  const float* group_whitening(int g) const { return block_whitening(g / stages); }
  // [width()][n_codes] of group g, F16 (whitened for a whitened book).
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
inline size_t cq_codebook_bytes(CqSpec spec, int head_dim, int stages = 1) {
  return static_cast<size_t>(head_dim) * stages * spec.n_codes() * sizeof(uint16_t);
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

// An all-zero codebook of the right size. Throws unless c * stages divides head_dim.
CqCodebook make_cq_codebook(CqSpec spec, int head_dim, int stages = 1);

// Gives `book` the query metric: identity whitening for every block (E = C),
// to be replaced block by block (learn_cq_block with a whitening).
void enable_cq_whitening(CqCodebook& book);

// Sweeps of residual refinement after the stages' greedy k-means: each stage in
// turn is coded again and re-centred against the others' reconstruction.
inline constexpr int kCqResidualSweeps = 2;
// Passes of the encoder over a block's stages after the greedy one, each stage
// re-coded against the others (cq_encode).
inline constexpr int kCqEncodeSweeps = 1;

// Learns block b of `book` (group b of a book of one stage) by k-means
// (k-means++ seeded with `seed`, then at most max_iterations Lloyd steps)
// over the block's channels of samples ([n][head_dim], n >= 1). Returns the
// Lloyd steps run (the mean over stages). Blocks are independent: threads may
// learn different blocks of one codebook at once.
// With stages s > 1: stage 0 by k-means on the rows, stage i on what stages
// 0..i-1 left (each row coded greedily, as cq_encode codes it), seeded with
// mix_seed(seed, i); then kCqResidualSweeps sweeps re-fit each stage to the
// rows minus the other stages' centroids.
// With `whitening` (W, [width][width] upper triangular; the book enable_cq_whitening'd),
// k-means runs on the whitened points W x, and the block keeps its centroids
// there (E) with the whitening.
// k-means runs in F32; the block's centroids are then rounded to F16. Throws
// kestrel::Error when a centroid does not fit F16 (set_cq_centroids): not for
// calibration's rows, read from an F16 cache, whose means fit; only a
// whitening that maps them past 65504 could.
// With `weights` ([n]), k-means of the weighted error (kv/cq_kmeans.h).
int learn_cq_block(CqCodebook& book, int b, std::span<const float> samples, uint64_t seed, int max_iterations,
                   const float* whitening = nullptr, std::span<const float> weights = {});

// Every block, block b seeded with mix_seed(seed, b).
CqCodebook learn_cq_codebook(CqSpec spec, int head_dim, std::span<const float> samples, uint64_t seed,
                             int max_iterations, int stages = 1);

// row: [head_dim] -> codes: [groups], the nearest centroid of each group
// (under the book's whitening when it has one; ties: the lowest code), through
// `encode` (the cache's encoder kernel). With stages, each stage's code is the
// nearest centroid to what the block's earlier stages left (greedy). What the
// KV cache stores.
void cq_encode(const CqCodebook& book, kernels::CqEncodeFn encode, const float* row, uint8_t* codes);
// The same through the best Isa's encoder.
void cq_encode_row(const CqCodebook& book, std::span<const float> row, std::span<uint8_t> codes);
// codes: [groups] -> row: [head_dim], the centroids (a block's stages summed
// in order; C: through W^-1 for a whitened book).
void cq_decode_row(const CqCodebook& book, std::span<const uint8_t> codes, std::span<float> row);

// |row - decode(encode(row))| / |row| (0 for a zero row), in double.
double cq_relative_error(const CqCodebook& book, std::span<const float> row);

}  // namespace kestrel
