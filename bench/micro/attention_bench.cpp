// Attention kernel microbenchmarks, per KV type / algorithm and per ISA the
// host runs, through the kernel table (kernels/attention_set.h) as the engine
// calls it.
//  attn_row/<algo>/<kv>/<isa>/d<d>/n<keys>: one query row (decode) against n
//    cached keys in 16-row paged blocks; bytes/s counts the K and V bytes read
//    (8k keys of F16 at d=128 is 4 MB per head: past L2, as in a long decode).
//    sage/q8_0 and int8/q8_0 are the smoothed-K cache (kv/kv_cache.h) with its
//    block means (int8/q8_0: V q8_0 too, P.V in integers).
//  attn_tile/<algo>/<kv>/<isa>/d<d>/n<keys>: a prompt tile of 64 query rows,
//    causal over the last 64 of n keys; .../d64/n4096/g3: 63 rows, 21 tokens
//    x 3 query heads (SmolLM2's group), causal over the last 21 of 4096 keys:
//    the tiles of a 4k prompt.
//  attn_group/<algo>/<kv>/<isa>/d64/n4096/g<G>/{rows,tile,group}: one decode
//    step of G query heads sharing a KV head, three ways (bench_group).
//  attn_decode/<algo>/<kv>/<isa>/d64/n8192/{rows,group}: one decode step of
//    every layer of SmolLM2 at depth 8192 (30 layers x 3 KV heads of 3 query
//    heads), one thread, over a pool laid out as the KV cache lays it out
//    (block b of (layer, head) at b * 90 + layer * 3 + head: 100-190 MB, read
//    from DRAM as in the model, where attn_group's 4096 keys stay in L2).
// Values are random normals (the kernels' speed does not depend on them).
#include <benchmark/benchmark.h>

#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention_set.h"
#include "kernels/quant_kernels.h"
#include "platform/cpu.h"

namespace kestrel::kernels {
namespace {

constexpr int64_t kBlock = 16;  // the KV cache's block length

struct Cache {
  std::vector<uint8_t> k, v;
  std::vector<uint16_t> means;  // smoothed keys (sage over a block-quantized K): one F16 mean key per block
  std::vector<int32_t> ids;
  KvRows rows;
  size_t bytes;
};

Cache make_cache(DType t, int64_t n, int d, bool smoothed) {
  Cache c;
  const size_t rb = row_bytes(t, d);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  c.ids.resize(static_cast<size_t>(blocks));
  std::iota(c.ids.begin(), c.ids.end(), 0);
  std::mt19937 rng(7);
  std::shuffle(c.ids.begin(), c.ids.end(), rng);  // pages are scattered in a real cache
  c.k.resize(static_cast<size_t>(blocks * kBlock) * rb);
  c.v.resize(c.k.size());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(d));
  for (int64_t r = 0; r < blocks * kBlock; ++r) {
    for (auto& e : x) e = nd(rng);
    quant_kernels(t, Isa::Scalar).quantize_row(x.data(), c.k.data() + r * rb, d);
    for (auto& e : x) e = nd(rng);
    quant_kernels(t, Isa::Scalar).quantize_row(x.data(), c.v.data() + r * rb, d);
  }
  const int64_t stride = kBlock * static_cast<int64_t>(rb);
  c.rows = KvRows{c.k.data(), c.v.data(), c.ids.data(), stride, kBlock, stride, t, t};
  if (smoothed) {  // zero means: the same work as real ones
    c.means.assign(static_cast<size_t>(blocks) * d, 0);
    c.rows.k_mean = c.means.data();
    c.rows.mean_stride = d;
  }
  c.bytes = 2 * rb * static_cast<size_t>(n);
  return c;
}

void bench_row(benchmark::State& state, AttentionAlgo algo, DType t, Isa isa, int d, int64_t n) {
  const AttentionKernelSet& set = attention_kernel_set(t, algo, isa);
  const Cache c = make_cache(t, n, d, smooths_keys(t, algo));
  std::vector<float> q(static_cast<size_t>(d), 0.1f), out(q.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (auto _ : state) {
    set.row(c.rows, n, d, q.data(), scale, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * c.bytes));
  state.counters["keys/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * static_cast<double>(n), benchmark::Counter::kIsRate);
}

void bench_tile(benchmark::State& state, AttentionAlgo algo, DType t, Isa isa, int d, int64_t n, int heads) {
  const AttentionKernelSet& set = attention_kernel_set(t, algo, isa);
  const Cache c = make_cache(t, n, d, smooths_keys(t, algo));
  constexpr int kRows = 64;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<std::vector<float>> q(kRows, std::vector<float>(static_cast<size_t>(d))), o = q;
  const float* qp[kRows];
  float* op[kRows];
  int64_t vis[kRows];
  const int n_rows = kRows / heads * heads;
  for (int r = 0; r < n_rows; ++r) {
    for (auto& x : q[r]) x = nd(rng);
    qp[r] = q[r].data();
    op[r] = o[r].data();
    vis[r] = n - (kRows / heads) + 1 + r / heads;  // token r / heads; heads rows share a token
  }
  std::vector<float> scratch(tile_scratch_floats(d));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (auto _ : state) {
    set.tile(c.rows, d, TileRows{qp, op, vis, n_rows}, scale, scratch.data());
    benchmark::DoNotOptimize(op[0]);
  }
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * n_rows, benchmark::Counter::kIsRate);
}

// A decode step of a GQA group: `group` query heads over one KV head's n keys,
// as `group` row calls, as one tile of `group` rows, or through the set's group
// kernel (sage/int8 over a smoothed cache; what decode runs when there is one).
enum class GroupAs { Rows, Tile, Group };
void bench_group(benchmark::State& state, AttentionAlgo algo, DType t, Isa isa, int d, int64_t n, int group,
                 GroupAs as) {
  const AttentionKernelSet& set = attention_kernel_set(t, algo, isa);
  const Cache c = make_cache(t, n, d, smooths_keys(t, algo));
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<std::vector<float>> q(static_cast<size_t>(group), std::vector<float>(static_cast<size_t>(d))), o = q;
  const float* qp[kMaxTileRows];
  float* op[kMaxTileRows];
  int64_t vis[kMaxTileRows];
  for (int r = 0; r < group; ++r) {
    for (auto& x : q[r]) x = nd(rng);
    qp[r] = q[r].data();
    op[r] = o[r].data();
    vis[r] = n;
  }
  std::vector<float> scratch(tile_scratch_floats(d));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (auto _ : state) {
    if (as == GroupAs::Tile)
      set.tile(c.rows, d, TileRows{qp, op, vis, group}, scale, scratch.data());
    else if (as == GroupAs::Group)
      set.group(c.rows, n, d, qp, group, scale, op);
    else
      for (int r = 0; r < group; ++r) set.row(c.rows, n, d, qp[r], scale, op[r]);
    benchmark::DoNotOptimize(op[0]);
  }
}

// One decode step of a whole model's attention at depth n (see the header).
void bench_decode(benchmark::State& state, AttentionAlgo algo, DType t, Isa isa, int d, int64_t n, GroupAs as) {
  constexpr int kLayers = 30, kKvHeads = 3, kGroup = 3, kHeads = kLayers * kKvHeads;
  const AttentionKernelSet& set = attention_kernel_set(t, algo, isa);
  const Cache pool = make_cache(t, n * kHeads, d, smooths_keys(t, algo));
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<std::vector<int32_t>> ids(kHeads, std::vector<int32_t>(static_cast<size_t>(blocks)));
  for (int h = 0; h < kHeads; ++h)
    for (int64_t b = 0; b < blocks; ++b) ids[h][static_cast<size_t>(b)] = static_cast<int32_t>(b * kHeads + h);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<std::vector<float>> q(kGroup, std::vector<float>(static_cast<size_t>(d))), o = q;
  const float* qp[kGroup];
  float* op[kGroup];
  for (int r = 0; r < kGroup; ++r) {
    for (auto& x : q[r]) x = nd(rng);
    qp[r] = q[r].data();
    op[r] = o[r].data();
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (auto _ : state) {
    for (int h = 0; h < kHeads; ++h) {
      KvRows rows = pool.rows;
      rows.ids = ids[h].data();
      if (as == GroupAs::Group)
        set.group(rows, n, d, qp, kGroup, scale, op);
      else
        for (int r = 0; r < kGroup; ++r) set.row(rows, n, d, qp[r], scale, op[r]);
    }
    benchmark::DoNotOptimize(op[0]);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * pool.bytes));
}

int register_all() {
  struct Kind {
    AttentionAlgo algo;
    DType t;
  };
  const Kind kinds[] = {{AttentionAlgo::Exact, DType::F16},  {AttentionAlgo::Exact, DType::Q8_0},
                        {AttentionAlgo::Exact, DType::Q4_0}, {AttentionAlgo::Sage, DType::F16},
                        {AttentionAlgo::Sage, DType::Q8_0},  {AttentionAlgo::Int8, DType::F16},
                        {AttentionAlgo::Int8, DType::Q8_0}};
  for (Isa isa : supported_isas())
    for (const Kind& k : kinds)
      for (int d : {64, 128}) {
        const std::string tag = std::string(attention_algo_name(k.algo)) + "/" + std::string(dtype_name(k.t)) + "/" +
                                std::string(isa_name(isa)) + "/d" + std::to_string(d);
        for (int64_t n : {int64_t{512}, int64_t{2048}, int64_t{8192}})
          benchmark::RegisterBenchmark(("attn_row/" + tag + "/n" + std::to_string(n)).c_str(), bench_row, k.algo, k.t,
                                       isa, d, n)
              ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("attn_tile/" + tag + "/n512").c_str(), bench_tile, k.algo, k.t, isa, d,
                                     int64_t{512}, 1)
            ->Unit(benchmark::kMicrosecond);
        // What a 4k prompt's tiles are on SmolLM2 (3 query heads per KV head):
        // 21 tokens x 3 heads at the end of 4096 keys.
        if (d == 64)
          benchmark::RegisterBenchmark(("attn_tile/" + tag + "/n4096/g3").c_str(), bench_tile, k.algo, k.t, isa, d,
                                       int64_t{4096}, 3)
              ->Unit(benchmark::kMicrosecond);
      }
  for (Isa isa : supported_isas())
    for (const Kind& k : kinds)
      for (int group : {3, 7})
        for (GroupAs as : {GroupAs::Rows, GroupAs::Tile, GroupAs::Group}) {
          if (as == GroupAs::Group && !attention_kernel_set(k.t, k.algo, isa).group) continue;
          const char* how = as == GroupAs::Rows ? "/rows" : as == GroupAs::Tile ? "/tile" : "/group";
          const std::string tag = std::string("attn_group/") + std::string(attention_algo_name(k.algo)) + "/" +
                                  std::string(dtype_name(k.t)) + "/" + std::string(isa_name(isa)) + "/d64/n4096/g" +
                                  std::to_string(group) + how;
          benchmark::RegisterBenchmark(tag.c_str(), bench_group, k.algo, k.t, isa, 64, int64_t{4096}, group, as)
              ->Unit(benchmark::kMicrosecond);
        }
  for (Isa isa : supported_isas())
    for (const Kind& k : kinds)
      for (GroupAs as : {GroupAs::Rows, GroupAs::Group}) {
        if (as == GroupAs::Group && !attention_kernel_set(k.t, k.algo, isa).group) continue;
        const std::string tag = std::string("attn_decode/") + std::string(attention_algo_name(k.algo)) + "/" +
                                std::string(dtype_name(k.t)) + "/" + std::string(isa_name(isa)) + "/d64/n8192" +
                                (as == GroupAs::Rows ? "/rows" : "/group");
        benchmark::RegisterBenchmark(tag.c_str(), bench_decode, k.algo, k.t, isa, 64, int64_t{8192}, as)
            ->Unit(benchmark::kMillisecond);
      }
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace kestrel::kernels
