// Kernel microbenchmarks, per format and per ISA the host runs.
//  vec_dot/<type>/<isa>/<rows>x<cols>: one activation row against every row of
//    a weight matrix (the decode-time matmul, memory-bound once the matrix
//    leaves the caches); bytes/s counts weight bytes read. 4096 rows do not fit
//    in L2; 256 rows (~0.6 MB in Q4_0) do, and show the kernel's own speed.
//  quantize_act/<type>/<isa>: the activation quantizer on a 4096-float row.
//  f32/<op>/<isa>: the float primitives on 4096 floats (swiglu: bytes/s counts
//    the gate row only, as the other ops count one row).
// Weight matrices are random blocks with finite fp16 scales (values do not
// change the speed of integer kernels; no NaN or subnormal floats appear).
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/f32_kernels.h"
#include "kernels/quant_kernels.h"
#include "platform/cpu.h"

namespace kestrel::kernels {
namespace {

constexpr int64_t kCols = 4096;

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                              DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS};

// Offsets of the fp16 scale fields per block, to keep them finite and normal.
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

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, AlignedFree>;

Buffer alloc(size_t bytes) {
  return Buffer(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
}

Buffer random_matrix(DType t, int64_t rows, size_t* bytes_out) {
  const size_t row = row_bytes(t, kCols);
  const size_t bytes = row * static_cast<size_t>(rows);
  Buffer buf = alloc(bytes);
  uint8_t* p = buf.get();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.01f, 1.0f);
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
    const int64_t n = kCols * rows;
    for (int64_t i = 0; i < n; ++i) {
      const float v = u(rng) - 0.5f;
      if (t == DType::F32) std::memcpy(p + 4 * i, &v, 4);
      const uint16_t h = t == DType::F16 ? f32_to_fp16(v) : f32_to_bf16(v);
      if (t != DType::F32) std::memcpy(p + 2 * i, &h, 2);
    }
  } else {
    for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(rng());
    const size_t bb = traits(t).block_bytes;
    for (size_t off = 0; off < bytes; off += bb)
      for (int f : half_fields(t)) {
        const uint16_t h = f32_to_fp16(u(rng) * 0.01f);
        std::memcpy(p + off + static_cast<size_t>(f), &h, 2);
      }
  }
  *bytes_out = bytes;
  return buf;
}

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = g(rng);
  return x;
}

void bench_vec_dot(benchmark::State& state, DType t, Isa isa, int64_t rows) {
  const QuantKernels& k = quant_kernels(t, isa);
  size_t bytes = 0;
  const Buffer w = random_matrix(t, rows, &bytes);
  const std::vector<float> x = random_floats(kCols, 3);
  Buffer act = alloc(row_bytes(k.vec_dot_type, kCols));
  quant_kernels(k.vec_dot_type, isa).quantize_row(x.data(), act.get(), kCols);
  const size_t row = row_bytes(t, kCols);
  std::vector<float> out(static_cast<size_t>(rows));
  for (auto _ : state) {
    for (int64_t r = 0; r < rows; ++r) out[static_cast<size_t>(r)] = k.vec_dot(kCols, w.get() + row * static_cast<size_t>(r), act.get());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * static_cast<double>(rows),
                                                benchmark::Counter::kIsRate);
}

void bench_quantize_act(benchmark::State& state, DType t, Isa isa) {
  const QuantKernels& k = quant_kernels(t, isa);
  const std::vector<float> x = random_floats(kCols, 4);
  Buffer out = alloc(row_bytes(t, kCols));
  for (auto _ : state) {
    k.quantize_row(x.data(), out.get(), kCols);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kCols * 4);
}

void bench_f32(benchmark::State& state, int op, Isa isa) {
  const F32Kernels& k = f32_kernels(isa);
  std::vector<float> a = random_floats(kCols, 5), b = random_floats(kCols, 6);
  std::vector<uint16_t> h(kCols);
  float sink = 0;
  bool up = false;  // scale alternately up and down: values never drift into subnormals
  for (auto _ : state) {
    up = !up;
    switch (op) {
      case 0: sink += k.dot(kCols, a.data(), b.data()); break;
      case 1: k.axpy(kCols, up ? 1e-3f : -1e-3f, a.data(), b.data()); break;
      case 2: k.scale(kCols, up ? 1.001f : 1.0f / 1.001f, b.data()); break;
      case 3: k.f32_to_f16(kCols, a.data(), h.data()); break;
      case 4: k.f16_to_f32(kCols, h.data(), b.data()); break;
      default: {
        // On a copy each time: swiglu in place would drive the gate to 0 or inf.
        std::memcpy(b.data(), a.data(), kCols * sizeof(float));
        k.swiglu(kCols, b.data(), a.data());
        break;
      }
    }
    benchmark::DoNotOptimize(sink);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kCols * 4);
}

int register_all() {
  for (Isa isa : supported_isas()) {
    const std::string is(isa_name(isa));
    for (DType t : kWeightTypes) {
      for (int64_t rows : {int64_t{4096}, int64_t{256}}) {
        const std::string name =
            "vec_dot/" + std::string(dtype_name(t)) + "/" + is + "/" + std::to_string(rows) + "x" + std::to_string(kCols);
        benchmark::RegisterBenchmark(name.c_str(), bench_vec_dot, t, isa, rows)->Unit(benchmark::kMicrosecond);
      }
    }
    for (DType t : {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::F16, DType::BF16})
      benchmark::RegisterBenchmark(("quantize_act/" + std::string(dtype_name(t)) + "/" + is).c_str(),
                                   bench_quantize_act, t, isa);
    const char* ops[] = {"dot", "axpy", "scale", "f32_to_f16", "f16_to_f32", "swiglu"};
    for (int op = 0; op < 6; ++op)
      benchmark::RegisterBenchmark(("f32/" + std::string(ops[op]) + "/" + is).c_str(), bench_f32, op, isa);
  }
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace kestrel::kernels
