// This machine's roofline, measured (see docs/performance.md):
//  roofline/read/<size>: read bandwidth, streaming 64-byte loads over a buffer
//    of that size (1 MB stays in L2; 100 MB is about the L3's 105 MB; 400 MB
//    comes from DRAM). Run with threads:1 and threads:2 (each its own buffer).
//    roofline/read_huge/<size>: the same on 2 MiB pages, as packed weights are.
//  roofline/vnni_int8: peak vpdpbusd (zmm) throughput, 12 independent chains;
//    GOP/s counts 2 ops per int8 multiply-add.
//  roofline/fma_f32: peak vfmadd (zmm) throughput, 12 independent chains.
//  roofline/amx_int8: peak tdpbssd throughput, 4 accumulator tiles.
//  roofline/segments/<L>lines/d<pct>: the bound on what skipping weights can
//    save (TEAL, kernels/sparse_columns.h): 400 MB read in segments of L
//    contiguous lines, each kept with probability pct % (the rest skipped),
//    in address order. The time of d60 over d100 at one L is the least a
//    decode step keeping 60 % of its inputs can take over reading them all,
//    when one input's weights are L lines: the hardware prefetchers fetch
//    lines past a skipped segment, so short segments save little or nothing.
//  On AVX2-only CPUs: roofline/read with 32-byte loads, and
//  roofline/maddubs_int8 (vpmaddubsw ymm, 12 chains: the AVX2 panel kernels'
//  product) in place of vnni_int8.
// Rates are per CPU second (Google Benchmark's default): the machine is shared,
// and CPU time is what a core delivers while it runs us.
// The loops use target attributes: this file is compiled for baseline x86-64
// and only registers what the CPU runs.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/amx/amx_kernels.h"
#include "platform/cpu.h"
#include "platform/mmap.h"

namespace kestrel {
namespace {

#define KESTREL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define KESTREL_AMX __attribute__((target("avx512f,amx-tile,amx-int8")))
#define KESTREL_AVX2 __attribute__((target("avx2")))

__attribute__((noinline)) KESTREL_AVX512 int64_t read_buffer(const uint8_t* p, size_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < bytes; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
  }
  return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}

__attribute__((noinline)) KESTREL_AVX2 int64_t read_buffer_avx2(const uint8_t* p, size_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < bytes; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

void bench_read(benchmark::State& state, size_t bytes, PageSize pages) {
  ZeroedPages buf(bytes, pages);
  std::memset(buf.data(), 1, bytes);  // touch every page before timing
  int64_t sink = 0;
  uint8_t* p = buf.data();
  for (auto _ : state) {
    benchmark::DoNotOptimize(p);  // an opaque pointer: every iteration reads again
    sink += isa_supported(Isa::Avx512) ? read_buffer(p, bytes) : read_buffer_avx2(p, bytes);
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(sink);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
}

// Sums the kept segments of `lines` 64-byte lines each.
__attribute__((noinline)) KESTREL_AVX2 int64_t read_segments(const uint8_t* p, const std::vector<uint8_t>& keep,
                                                             int lines) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0;
  const size_t segment = static_cast<size_t>(lines) * 64;
  for (size_t s = 0; s < keep.size(); ++s) {
    if (!keep[s]) continue;
    const uint8_t* q = p + s * segment;
    for (size_t i = 0; i < segment; i += 64) {
      a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(q + i)));
      a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(q + i + 32)));
    }
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(a0, a1));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

void bench_segments(benchmark::State& state, int lines, int pct) {
  const size_t bytes = size_t{400} << 20, segment = static_cast<size_t>(lines) * 64;
  ZeroedPages buf(bytes, PageSize::Huge);  // where weights live (since session 35; 4 KiB pages before)
  std::memset(buf.data(), 1, bytes);
  std::vector<uint8_t> keep(bytes / segment);
  uint32_t h = 0x9E3779B9u * static_cast<uint32_t>(state.thread_index() + 1);
  size_t kept = 0;
  for (uint8_t& k : keep) {  // xorshift: a fixed pattern per thread
    h ^= h << 13;
    h ^= h >> 17;
    h ^= h << 5;
    k = h % 100 < static_cast<uint32_t>(pct);
    kept += k;
  }
  int64_t sink = 0;
  uint8_t* p = buf.data();
  for (auto _ : state) {
    benchmark::DoNotOptimize(p);
    sink += read_segments(p, keep, lines);
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(sink);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kept * segment));
}

constexpr int kChains = 12;
constexpr int64_t kInner = 1 << 16;

KESTREL_AVX512 int64_t vnni_loop() {
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
  for (int64_t n = 0; n < kInner; ++n) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  __m512i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  return _mm512_reduce_add_epi32(s);
}

KESTREL_AVX512 float fma_loop() {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
  for (int64_t n = 0; n < kInner; ++n) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    __asm__ volatile("" : "+v"(x));
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

KESTREL_AVX2 int64_t maddubs_loop() {
  __m256i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_epi16(static_cast<int16_t>(i));
  __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5);
  for (int64_t n = 0; n < kInner; ++n) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_maddubs_epi16(acc[i], b);
    __asm__ volatile("" : "+x"(a));
  }
  __m256i s = _mm256_xor_si256(acc[0], a);
  for (int i = 1; i < kChains; ++i) s = _mm256_add_epi16(s, acc[i]);
  return _mm256_extract_epi16(s, 0);
}

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// tmm0..3: C [16, 16] int32; tmm4, tmm5: A [16, 64]; tmm6, tmm7: B [16, 64].
KESTREL_AMX int32_t amx_loop(const int8_t* ab) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab + 1024, 64);
  _tile_loadd(6, ab + 2048, 64);
  _tile_loadd(7, ab + 3072, 64);
  for (int64_t n = 0; n < kInner / 16; ++n) {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  alignas(64) int32_t c[256];
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0];
}

// kChains chains of kInner integer multiply-adds of `products` int8 products
// each (2 ops per product) per call of `loop`.
void bench_int8(benchmark::State& state, int64_t (*loop)(), int products) {
  int64_t sink = 0;
  for (auto _ : state) sink += loop();
  benchmark::DoNotOptimize(sink);
  state.counters["GOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kInner * kChains * products * 2 / 1e9, benchmark::Counter::kIsRate);
}

void bench_fma(benchmark::State& state) {
  float sink = 0;
  for (auto _ : state) sink += fma_loop();
  benchmark::DoNotOptimize(sink);
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kInner * kChains * 16 * 2 / 1e9, benchmark::Counter::kIsRate);
}

void bench_amx(benchmark::State& state) {
  std::vector<int8_t> ab(4096, 1);
  int64_t sink = 0;
  for (auto _ : state) sink += amx_loop(ab.data());
  benchmark::DoNotOptimize(sink);
  // Each tdpbssd: 16 x 16 outputs x 64 products.
  state.counters["GOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * (kInner / 16) * 4 * 16 * 16 * 64 * 2 / 1e9, benchmark::Counter::kIsRate);
}

int register_all() {
  if (!isa_supported(Isa::Avx2)) return 0;
  for (size_t mb : {1, 100, 400})
    for (PageSize pages : {PageSize::Base, PageSize::Huge})
      benchmark::RegisterBenchmark(
          ((pages == PageSize::Huge ? "roofline/read_huge/" : "roofline/read/") + std::to_string(mb) + "MB").c_str(),
          bench_read, mb << 20, pages)
          ->Threads(1)
          ->Threads(2)
          ->Unit(benchmark::kMicrosecond);
  for (int lines : {1, 12, 70, 128})
    for (int pct : {40, 60, 100})
      benchmark::RegisterBenchmark(
          ("roofline/segments/" + std::to_string(lines) + "lines/d" + std::to_string(pct)).c_str(), bench_segments,
          lines, pct)
          ->Threads(1)
          ->Threads(2)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
  if (!isa_supported(Isa::Avx512)) {
    benchmark::RegisterBenchmark("roofline/maddubs_int8", bench_int8, maddubs_loop, 32)->Threads(1)->Threads(2);
    return 0;
  }
  benchmark::RegisterBenchmark("roofline/vnni_int8", bench_int8, vnni_loop, 64)->Threads(1)->Threads(2);
  benchmark::RegisterBenchmark("roofline/fma_f32", bench_fma)->Threads(1)->Threads(2);
  if (kernels::amx::available())
    benchmark::RegisterBenchmark("roofline/amx_int8", bench_amx)->Threads(1)->Threads(2);
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace kestrel
