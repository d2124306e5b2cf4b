// Batched matmul microbenchmarks (see docs/performance.md for how to run them).
//  gemm/<type>/<kernel>/<rows>x<cols>/t<n>: one thread, the kernel alone on
//    already quantized activations. Kernels: vecdot-<isa> (one vec_dot per row
//    and token, the decode path), avx2 (AVX2 panel kernel), vnni (AVX-512 panel
//    kernel), amx (AMX tiles for whole 16-token tiles, VNNI for the rest).
//    Only the kernels the host runs are registered.
//  matmul/<type>/<path>/<rows>x<cols>/t<n>: the whole op (activation
//    quantization included) on a 2-thread pool, as the model calls it, at the
//    host's highest Isa: path vecdot, vnni or amx (AVX-512), avx2 (AVX2 panels).
//  pack/<type>/<rows>x<cols>: repacking one matrix from its GGUF rows into
//    panels (kernels::pack_panels), one thread: what a model load pays per
//    weight the first time it is used (weight GB/s = GGUF bytes read).
// The gemm/ rates are per CPU second of the one thread (the machine is shared:
// CPU time is the better measure of the kernel), the matmul/ ones per wall second.
// Counters: GFLOP/s = 2 * rows * cols * n per second; weight GB/s = bytes of the
// weight layout the kernel reads (GGUF rows or panels) per second.
// Weights: random blocks with small finite scales, in enough copies (>= 192 MB,
// past this machine's 105 MB L3) that each iteration reads a copy from DRAM, as
// the model's layers do during decode.
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/packed_gemm.h"
#include "kernels/quant_kernels.h"
#include "ops/matmul.h"
#include "platform/cpu.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

constexpr size_t kRotationBytes = size_t{192} << 20;

std::vector<int> half_fields(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return {0};
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q6_K: return {208};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::IQ4_NL: case DType::IQ4_XS: return {0};
    default: return {};
  }
}

struct Matrices {
  DType type;
  int64_t rows, cols;
  size_t bytes;  // one copy, GGUF layout
  std::vector<std::vector<uint8_t>> copies;
  std::vector<std::vector<uint8_t>> packed;  // built on demand
  std::vector<Weight> weights;               // views of the copies, for matmul
};

// One set of matrices at a time (the last shape asked for), kept across the
// repeated calls Google Benchmark makes to the same benchmark.
Matrices& matrices(DType type, int64_t rows, int64_t cols, bool need_packed) {
  static std::unique_ptr<Matrices> m;
  if (!m || m->type != type || m->rows != rows || m->cols != cols) {
    m.reset();
    m = std::make_unique<Matrices>();
    m->type = type;
    m->rows = rows;
    m->cols = cols;
    m->bytes = row_bytes(type, cols) * static_cast<size_t>(rows);
    const size_t n = std::max<size_t>(2, kRotationBytes / m->bytes);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(0.01f, 1.0f);
    m->copies.resize(n);
    for (auto& c : m->copies) {
      c.resize(m->bytes);
      for (auto& b : c) b = static_cast<uint8_t>(rng());
      const size_t bb = traits(type).block_bytes;
      for (size_t off = 0; off < m->bytes; off += bb)
        for (int f : half_fields(type)) {
          const uint16_t h = f32_to_fp16(u(rng) * 0.01f);
          std::memcpy(&c[off + static_cast<size_t>(f)], &h, 2);
        }
      Weight w;
      w.name = "bench";
      w.type = type;
      w.rows = rows;
      w.cols = cols;
      w.data = c.data();
      w.row_stride = row_bytes(type, cols);
      m->weights.push_back(w);
    }
  }
  if (need_packed && m->packed.empty()) {
    const kernels::PanelFormat& f = *kernels::panel_format(type);
    const int64_t panels = (rows + kernels::kPanelRows - 1) / kernels::kPanelRows;
    for (const auto& c : m->copies) {
      std::vector<uint8_t> p(kernels::packed_matrix_bytes(f, rows, cols));
      kernels::pack_panels(type, c.data(), row_bytes(type, cols), rows, cols, 0, panels, p.data());
      m->packed.push_back(std::move(p));
    }
  }
  return *m;
}

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = g(rng);
  return x;
}

void set_counters(benchmark::State& state, int64_t rows, int64_t cols, int64_t tokens, size_t weight_bytes) {
  const double it = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(it * 2.0 * static_cast<double>(rows * cols * tokens) / 1e9,
                                                 benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(it * static_cast<double>(weight_bytes) / 1e9, benchmark::Counter::kIsRate);
}

// The highest Isa of the host (Avx2 or Avx512: the benchmarks need AVX2).
Isa host_isa() { return isa_supported(Isa::Avx512) ? Isa::Avx512 : Isa::Avx2; }

enum class Kernel { VecDotAvx2, VecDotAvx512, PanelsAvx2, Vnni, Amx };

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::VecDotAvx2: return "vecdot-avx2";
    case Kernel::VecDotAvx512: return "vecdot-avx512";
    case Kernel::PanelsAvx2: return "avx2";
    case Kernel::Vnni: return "vnni";
    case Kernel::Amx: return "amx";
  }
  return "?";
}

void bench_gemm(benchmark::State& state, DType type, Kernel kernel, int64_t rows, int64_t cols, int64_t tokens) {
  const bool panels = kernel == Kernel::PanelsAvx2 || kernel == Kernel::Vnni || kernel == Kernel::Amx;
  Matrices& m = matrices(type, rows, cols, panels);
  const Isa isa = kernel == Kernel::VecDotAvx2 || kernel == Kernel::PanelsAvx2 ? Isa::Avx2 : Isa::Avx512;
  const auto& kern = kernels::quant_kernels(type, isa);
  const size_t a_stride = row_bytes(kern.vec_dot_type, cols);
  std::vector<uint8_t> act(a_stride * static_cast<size_t>(tokens));
  const std::vector<float> x = random_floats(cols * tokens, 3);
  for (int64_t t = 0; t < tokens; ++t)
    kernels::quant_kernels(kern.vec_dot_type, isa).quantize_row(x.data() + t * cols, act.data() + t * a_stride, cols);
  std::vector<float> y(static_cast<size_t>(rows * tokens));
  size_t copy = 0;
  size_t weight_bytes = m.bytes;
  if (!panels) {
    for (auto _ : state) {
      const uint8_t* w = m.copies[copy].data();
      copy = (copy + 1) % m.copies.size();
      const size_t stride = row_bytes(type, cols);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t t = 0; t < tokens; ++t)
          y[static_cast<size_t>(t * rows + r)] = kern.vec_dot(cols, w + static_cast<size_t>(r) * stride, act.data() + t * a_stride);
      benchmark::ClobberMemory();
    }
  } else {
    const kernels::PanelFormat& f = *kernels::panel_format(type);
    const kernels::PanelGemmFn fn =
        kernel == Kernel::Amx ? kernels::panel_gemm_amx(type, Isa::Avx512) : kernels::panel_gemm(type, isa);
    const size_t n_groups = static_cast<size_t>(cols / f.group);
    std::vector<kernels::ActGroup> groups(n_groups * static_cast<size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t)
      kernels::activation_groups(type, act.data() + t * a_stride, cols, groups.data() + static_cast<size_t>(t) * n_groups);
    // As matmul does for AMX: the activation tiles regrouped once per call.
    std::vector<uint8_t> tiles(kernels::act_tiles_bytes(f, cols, tokens) + 1);
    if (kernel == Kernel::Amx) kernels::pack_act_tiles(f, act.data(), a_stride, cols, tokens, tiles.data());
    const size_t pb = kernels::panel_bytes(f, cols);
    const int64_t n_panels = (rows + kernels::kPanelRows - 1) / kernels::kPanelRows;
    weight_bytes = pb * static_cast<size_t>(n_panels);
    for (auto _ : state) {
      const uint8_t* packed = m.packed[copy].data();
      copy = (copy + 1) % m.packed.size();
      for (int64_t p = 0; p < n_panels; ++p) {
        const kernels::PanelGemmArgs args{cols, packed + static_cast<size_t>(p) * pb,
                                          static_cast<int>(std::min<int64_t>(16, rows - 16 * p)),
                                          act.data(), a_stride, groups.data(), n_groups, tokens,
                                          y.data() + 16 * p, rows,
                                          kernel == Kernel::Amx ? tiles.data() : nullptr};
        fn(f, args);
      }
      benchmark::ClobberMemory();
    }
  }
  set_counters(state, rows, cols, tokens, weight_bytes);
}

void bench_matmul(benchmark::State& state, DType type, MatmulPath path, int64_t rows, int64_t cols, int64_t tokens) {
  Matrices& m = matrices(type, rows, cols, false);
  static ThreadPool pool(2);
  Workspace scratch;
  const MatmulContext ctx{pool, scratch, host_isa(),
                          {path != MatmulPath::VecDot, path == MatmulPath::PanelsAmx ? AmxUse::Always : AmxUse::Never}};
  const std::vector<float> x = random_floats(cols * tokens, 3);
  std::vector<float> y(static_cast<size_t>(rows * tokens));
  size_t copy = 0;
  if (ctx.options.allow_panels)  // pack outside the timing
    for (const Weight& w : m.weights) w.packed->get(w, pool, ctx.isa);
  for (auto _ : state) {
    matmul(ctx, m.weights[copy], x.data(), tokens, y.data());
    copy = (copy + 1) % m.weights.size();
    benchmark::ClobberMemory();
  }
  const kernels::PanelFormat& f = *kernels::panel_format(type);
  set_counters(state, rows, cols, tokens,
               ctx.options.allow_panels ? kernels::packed_matrix_bytes(f, rows, cols) : m.bytes);
}

void bench_pack(benchmark::State& state, DType type, int64_t rows, int64_t cols) {
  Matrices& m = matrices(type, rows, cols, false);
  const kernels::PanelFormat& f = *kernels::panel_format(type);
  const int64_t panels = (rows + kernels::kPanelRows - 1) / kernels::kPanelRows;
  std::vector<uint8_t> out(kernels::packed_matrix_bytes(f, rows, cols));
  size_t copy = 0;
  for (auto _ : state) {
    kernels::pack_panels(type, m.copies[copy].data(), row_bytes(type, cols), rows, cols, 0, panels, out.data());
    copy = (copy + 1) % m.copies.size();
    benchmark::ClobberMemory();
  }
  state.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(m.bytes) / 1e9, benchmark::Counter::kIsRate);
}

int register_all() {
  if (!isa_supported(Isa::Avx2)) return 0;
  const bool avx512 = isa_supported(Isa::Avx512);
  const DType types[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                         DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                         DType::IQ4_NL, DType::IQ4_XS};
  const int64_t token_counts[] = {1, 2, 4, 8, 16, 32, 64, 128, 512};
  struct Shape {
    int64_t rows, cols;
  };
  // 2048x2048: a 1B model's attention projection; 1536x576: SmolLM2's FFN up
  // projection (576 inputs, 1536 outputs). K formats need cols % 256 == 0.
  const Shape shapes[] = {{2048, 2048}, {1536, 576}};
  for (DType t : types) {
    for (const Shape& s : shapes) {
      if (traits(t).block_size == 256 && s.cols % 256 != 0) continue;
      const std::string shape = std::to_string(s.rows) + "x" + std::to_string(s.cols);
      benchmark::RegisterBenchmark(("pack/" + std::string(dtype_name(t)) + "/" + shape).c_str(), bench_pack, t, s.rows,
                                   s.cols)
          ->Unit(benchmark::kMicrosecond);
      for (Kernel k : {Kernel::VecDotAvx2, Kernel::VecDotAvx512, Kernel::PanelsAvx2, Kernel::Vnni, Kernel::Amx}) {
        const bool needs_avx512 = k == Kernel::VecDotAvx512 || k == Kernel::Vnni || k == Kernel::Amx;
        if (needs_avx512 && !avx512) continue;
        if (k == Kernel::Amx && !kernels::panel_gemm_amx(t, Isa::Avx512)) continue;
        for (int64_t n : token_counts) {
          if (k == Kernel::Amx && n < 16) continue;  // no whole tile: it is the VNNI kernel
          const std::string name = "gemm/" + std::string(dtype_name(t)) + "/" + kernel_name(k) + "/" + shape +
                                   "/t" + std::to_string(n);
          benchmark::RegisterBenchmark(name.c_str(), bench_gemm, t, k, s.rows, s.cols, n)
              ->Unit(benchmark::kMicrosecond);
        }
      }
      for (MatmulPath p : {MatmulPath::VecDot, MatmulPath::Panels, MatmulPath::PanelsAmx}) {
        if (p == MatmulPath::PanelsAmx && !kernels::panel_gemm_amx(t, Isa::Avx512)) continue;
        const char* pn = p == MatmulPath::VecDot ? "vecdot" : p == MatmulPath::PanelsAmx ? "amx" : avx512 ? "vnni" : "avx2";
        for (int64_t n : token_counts) {
          if (p == MatmulPath::PanelsAmx && n < 16) continue;
          const std::string name = "matmul/" + std::string(dtype_name(t)) + "/" + pn + "/" + shape + "/t" +
                                   std::to_string(n);
          benchmark::RegisterBenchmark(name.c_str(), bench_matmul, t, p, s.rows, s.cols, n)
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime();
        }
      }
    }
  }
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace kestrel
