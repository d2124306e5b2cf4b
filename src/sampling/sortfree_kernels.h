#pragma once
// The passes of the sorting-free sampler (sampling/sortfree.h) over float rows,
// one table per Isa: scalar twins in sampling/ref, SIMD in sampling/avx2 and
// sampling/avx512, chosen at run time like kernels/f32_kernels.h.
//
// Exactness contract with the scalar twins: scan_max, compact_ge, count_split,
// filter and normalize give identical results on every Isa; exp_weights is
// within a few float ulps of std::exp, and the double sums (exp_weights,
// chunk_sums, sums_above) differ only by summation order.
#include <cstdint>
#include <limits>

#include "platform/cpu.h"

namespace kestrel::sampling {

// A place in the sampler's order on tokens: logit descending, then id
// ascending (the sort-based chain keeps lower ids first among equal logits).
// Token (l, i) is above key k when l > k.logit, or l == k.logit and i < k.id.
// Virtual ids turn a key into a logit threshold: {x, 0} is "l > x",
// {x, kIdMax} is "l >= x"; {-inf, kIdMax} has every token above it.
struct Key {
  float logit;
  int32_t id;
};
constexpr int32_t kIdMax = std::numeric_limits<int32_t>::max();
constexpr Key kEverything{-std::numeric_limits<float>::infinity(), kIdMax};

constexpr int64_t kBlock = 256;  // logits per block maximum: scan_max, compact_ge skip whole blocks
constexpr int64_t kChunk = 256;  // candidates per partial sum of the chunked prefix search

// Internal linkage: the SIMD translation units include these too, and a
// non-inlined copy built with -mavx512f must not be the one the linker keeps
// for the scalar code (it would be, at random, in an unoptimised build).
namespace {
inline bool above(float l, int32_t id, Key k) { return l > k.logit || (l == k.logit && id < k.id); }
// a is higher than b in the order (a's tokens above it are a subset of b's).
inline bool higher(Key a, Key b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); }
inline int64_t n_blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }
inline int64_t n_chunks(int64_t n) { return (n + kChunk - 1) / kChunk; }
}  // namespace

struct ScanResult {
  float max;  // over the non-NaN entries (-inf if none)
  bool nan;   // some entry is NaN
};

struct AboveSums {
  double mass[2];    // sum of p over entries above k0, above k1
  int64_t count[2];  // how many entries are above k0, above k1
};

struct SortFreeKernels {
  // block_max[b] = max of x[b*kBlock, min(n, (b+1)*kBlock)), NaN ignored.
  ScanResult (*scan_max)(const float* x, int64_t n, float* block_max);
  // Ids and values of the x[i] >= t (t > -inf) in index order, skipping the
  // blocks whose maximum is below t; returns how many. ids, vals: room for n.
  int64_t (*compact_ge)(const float* x, int64_t n, float t, const float* block_max, int32_t* ids, float* vals);
  // *gt = #{x[i] > t}, *eq = #{x[i] == t}.
  void (*count_split)(const float* x, int64_t n, float t, int64_t* gt, int64_t* eq);
  // Keeps in place, in order, the entries whose (l, id) is above k (keep_above)
  // or is not above k (!keep_above); the parallel arrays a and b (may be null)
  // follow. Returns the new length.
  int64_t (*filter)(float* l, int32_t* id, float* a, float* b, int64_t n, Key k, bool keep_above);
  // out[i] = exp((x[i] - shift) / temp) for x[i] <= shift and temp > 0 (-inf
  // gives 0); returns the sum of out in double.
  double (*exp_weights)(const float* x, int64_t n, float shift, float temp, float* out);
  // w[i] = float(double(w[i]) / z): the reference chain's normalised probabilities.
  void (*normalize)(float* w, int64_t n, double z);
  // sums[c] = sum of v[i] over the entries of chunk c (kChunk each) above low;
  // returns sums[0] + sums[1] + ... in that order.
  double (*chunk_sums)(const float* l, const int32_t* id, const float* v, int64_t n, Key low, double* sums);
  // Mass and count of the entries above k0 and above k1, in one pass.
  AboveSums (*sums_above)(const float* l, const int32_t* id, const float* p, int64_t n, Key k0, Key k1);
  Isa isa;
};

// The table for `isa`, lowered to what the CPU runs; no argument: best_isa().
const SortFreeKernels& sortfree_kernels(Isa isa);
const SortFreeKernels& sortfree_kernels();

// The same entry points per Isa (the table above points at them).
namespace ref {
ScanResult scan_max(const float* x, int64_t n, float* block_max);
int64_t compact_ge(const float* x, int64_t n, float t, const float* block_max, int32_t* ids, float* vals);
void count_split(const float* x, int64_t n, float t, int64_t* gt, int64_t* eq);
int64_t filter(float* l, int32_t* id, float* a, float* b, int64_t n, Key k, bool keep_above);
double exp_weights(const float* x, int64_t n, float shift, float temp, float* out);
void normalize(float* w, int64_t n, double z);
double chunk_sums(const float* l, const int32_t* id, const float* v, int64_t n, Key low, double* sums);
AboveSums sums_above(const float* l, const int32_t* id, const float* p, int64_t n, Key k0, Key k1);
}  // namespace ref
namespace avx2 {
ScanResult scan_max(const float* x, int64_t n, float* block_max);
int64_t compact_ge(const float* x, int64_t n, float t, const float* block_max, int32_t* ids, float* vals);
void count_split(const float* x, int64_t n, float t, int64_t* gt, int64_t* eq);
int64_t filter(float* l, int32_t* id, float* a, float* b, int64_t n, Key k, bool keep_above);
double exp_weights(const float* x, int64_t n, float shift, float temp, float* out);
void normalize(float* w, int64_t n, double z);
double chunk_sums(const float* l, const int32_t* id, const float* v, int64_t n, Key low, double* sums);
AboveSums sums_above(const float* l, const int32_t* id, const float* p, int64_t n, Key k0, Key k1);
}  // namespace avx2
namespace avx512 {
ScanResult scan_max(const float* x, int64_t n, float* block_max);
int64_t compact_ge(const float* x, int64_t n, float t, const float* block_max, int32_t* ids, float* vals);
void count_split(const float* x, int64_t n, float t, int64_t* gt, int64_t* eq);
int64_t filter(float* l, int32_t* id, float* a, float* b, int64_t n, Key k, bool keep_above);
double exp_weights(const float* x, int64_t n, float shift, float temp, float* out);
void normalize(float* w, int64_t n, double z);
double chunk_sums(const float* l, const int32_t* id, const float* v, int64_t n, Key low, double* sums);
AboveSums sums_above(const float* l, const int32_t* id, const float* p, int64_t n, Key k0, Key k1);
}  // namespace avx512

}  // namespace kestrel::sampling
