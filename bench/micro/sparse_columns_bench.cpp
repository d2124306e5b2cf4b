// TEAL's sparse decode GEMV (kernels/sparse_columns.h) against the dense
// decode matmul on the same weight: where activation sparsity stops paying.
//  sparse/<type>/<rows>x<cols>/d<pct>: one decode step keeping pct % of the
//    inputs, as ops/sparse_matmul.cpp runs it: select (|x| > 0 here, the
//    dropped inputs being zeros), the per-group ranges and sums, then the
//    sparse GEMV over the chunks on a 2-thread pool, at the host's best Isa.
//  sparse_a7/<type>/<rows>x<cols>/d<pct>: the same step with teal_act=a7
//    (4-bit weights: the kept inputs paired with 7-bit codes, the paired GEMV).
//  dense/<type>/<rows>x<cols>: ops/matmul.h matmul with n_tokens = 1 (the
//    panel kernels, or vec_dot where decode takes it) on the same pool.
// Counters (per wall second): GB/s = the weight's GGUF bytes, for both, so
// the ratio of two rows is their speed ratio ("effective" bandwidth); read_GB/s
// = the bytes the kernel actually reads (the kept columns and the scales of
// groups with a kept input; the panels or GGUF rows for dense).
// Weights: one random weight in enough copies (>= 512 MB, past the 480 MB L3
// this VM reports) that each call reads a copy from DRAM, as a model's layers
// do during decode. Shapes: Qwen2.5-1.5B's gate/up (8960 x 1536) and down
// (1536 x 8960).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/sparse_columns.h"
#include "ops/matmul.h"
#include "platform/cpu.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

constexpr size_t kRotationBytes = size_t{512} << 20;

ThreadPool& pool() {
  static ThreadPool p(2);
  return p;
}

// Offsets of the F16 scale fields, kept finite and small (gemm_bench.cpp).
std::vector<int> half_fields(DType t) {
  switch (t) {
    case DType::Q8_0:
      return {0};
    case DType::Q4_K:
      return {0, 2};
    case DType::Q6_K:
      return {208};
    default:
      return {};
  }
}

struct FreeBytes {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Bytes = std::unique_ptr<uint8_t, FreeBytes>;

Bytes aligned_bytes(size_t n) { return Bytes(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64))); }

// One weight, rotated through in copies: GGUF rows (with their panel copies
// for dense decode) and the input-major layout.
struct Weights {
  DType type;
  int64_t rows, cols;
  size_t gguf_bytes;
  kernels::ColumnLayout layout;
  std::vector<Bytes> gguf, columns;
  std::vector<Weight> views;
  bool packed = false;
};

Weights& weights(DType type, int64_t rows, int64_t cols) {
  static std::unique_ptr<Weights> w;
  if (w && w->type == type && w->rows == rows && w->cols == cols) return *w;
  w.reset();
  w = std::make_unique<Weights>();
  w->type = type;
  w->rows = rows;
  w->cols = cols;
  w->gguf_bytes = row_bytes(type, cols) * static_cast<size_t>(rows);
  w->layout = kernels::column_layout(type, rows, cols);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.01f, 1.0f);
  Bytes first = aligned_bytes(w->gguf_bytes);
  for (size_t i = 0; i < w->gguf_bytes; ++i) first.get()[i] = static_cast<uint8_t>(rng());
  const size_t bb = traits(type).block_bytes;
  for (size_t off = 0; off < w->gguf_bytes; off += bb)
    for (int f : half_fields(type)) {
      const uint16_t h = f32_to_fp16(u(rng) * 0.01f);
      std::memcpy(first.get() + off + static_cast<size_t>(f), &h, 2);
    }
  Bytes cols0 = aligned_bytes(w->layout.bytes());
  pool().parallel_for(w->layout.chunks(), [&](int64_t c0, int64_t c1, int) {
    kernels::build_columns(type, first.get(), row_bytes(type, cols), w->layout, c0, c1, cols0.get());
  });
  const size_t copies = std::max<size_t>(2, kRotationBytes / std::min(w->gguf_bytes, w->layout.bytes()) + 1);
  for (size_t i = 0; i < copies; ++i) {
    Bytes g = aligned_bytes(w->gguf_bytes), c = aligned_bytes(w->layout.bytes());
    std::memcpy(g.get(), first.get(), w->gguf_bytes);
    std::memcpy(c.get(), cols0.get(), w->layout.bytes());
    Weight v;
    v.name = "bench";
    v.type = type;
    v.rows = rows;
    v.cols = cols;
    v.data = g.get();
    v.row_stride = row_bytes(type, cols);
    w->views.push_back(v);
    w->gguf.push_back(std::move(g));
    w->columns.push_back(std::move(c));
  }
  return *w;
}

Isa host_isa() { return best_isa(); }

// x [cols]: N(0, 1) with all but round(density * cols) random entries zero.
std::vector<float> sparse_input(int64_t cols, int pct, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(cols));
  for (float& v : x) v = g(rng);
  std::vector<size_t> order(x.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const size_t kept = static_cast<size_t>(cols) * static_cast<size_t>(pct) / 100;
  for (size_t i = kept; i < order.size(); ++i) x[order[i]] = 0.0f;
  return x;
}

struct Step {
  std::vector<int32_t> index, group_begin;
  std::vector<float> value, group_sum;
  explicit Step(const kernels::ColumnLayout& l)
      : index(static_cast<size_t>(l.cols)),
        group_begin(static_cast<size_t>(l.groups()) + 1),
        value(static_cast<size_t>(l.cols)),
        group_sum(static_cast<size_t>(l.groups())) {}
};

// What ops/sparse_matmul.cpp does before the GEMV.
int64_t select_and_group(const kernels::SparseColumnKernels& k, const kernels::ColumnLayout& l, const float* x,
                         Step& s) {
  const int64_t kept = k.select(x, l.cols, 0.0f, s.index.data(), s.value.data());
  int64_t i = 0;
  for (int64_t g = 0; g < l.groups(); ++g) {
    s.group_begin[static_cast<size_t>(g)] = static_cast<int32_t>(i);
    const int64_t end = (g + 1) * l.group;
    float sum = 0.0f;
    for (; i < kept && s.index[static_cast<size_t>(i)] < end; ++i) sum += s.value[static_cast<size_t>(i)];
    s.group_sum[static_cast<size_t>(g)] = sum;
  }
  s.group_begin[static_cast<size_t>(l.groups())] = static_cast<int32_t>(i);
  return kept;
}

// Bytes one sparse call reads: per chunk, each group with a kept input costs
// its scales plus its kept columns.
size_t sparse_read_bytes(const kernels::ColumnLayout& l, const Step& s) {
  size_t per_chunk = 0;
  for (int64_t g = 0; g < l.groups(); ++g) {
    const auto n =
        static_cast<size_t>(s.group_begin[static_cast<size_t>(g) + 1] - s.group_begin[static_cast<size_t>(g)]);
    if (n) per_chunk += l.scale_bytes() + n * l.column_bytes();
  }
  return per_chunk * static_cast<size_t>(l.chunks());
}

void set_counters(benchmark::State& state, size_t gguf_bytes, size_t read_bytes) {
  const double it = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(it * static_cast<double>(gguf_bytes) / 1e9, benchmark::Counter::kIsRate);
  state.counters["read_GB/s"] =
      benchmark::Counter(it * static_cast<double>(read_bytes) / 1e9, benchmark::Counter::kIsRate);
}

void bench_sparse(benchmark::State& state, DType type, int64_t rows, int64_t cols, int pct) {
  Weights& w = weights(type, rows, cols);
  const kernels::ColumnLayout& l = w.layout;
  const kernels::SparseColumnKernels& k = kernels::sparse_column_kernels(host_isa());
  const kernels::SparseGemvFn gemv = l.codes == kernels::ColumnCodes::Nibble ? k.gemv_nibble : k.gemv_int8;
  const std::vector<float> x = sparse_input(cols, pct, 3);
  Step s(l);
  std::vector<float> y(static_cast<size_t>(rows));
  size_t copy = 0;
  for (auto _ : state) {
    select_and_group(k, l, x.data(), s);
    const kernels::ActiveInputs in{s.index.data(), s.value.data(), s.group_begin.data(), s.group_sum.data()};
    const uint8_t* columns = w.columns[copy].get();
    pool().parallel_for(l.chunks(), [&](int64_t c0, int64_t c1, int) { gemv(columns, l, in, c0, c1, y.data()); });
    copy = (copy + 1) % w.columns.size();
    benchmark::ClobberMemory();
  }
  set_counters(state, w.gguf_bytes, sparse_read_bytes(l, s));
}

// teal_act=a7 on a 4-bit weight: the same selection, then the kept inputs
// paired with 7-bit codes (kernels::pair_inputs, timed too) and the paired GEMV.
void bench_sparse_a7(benchmark::State& state, DType type, int64_t rows, int64_t cols, int pct) {
  Weights& w = weights(type, rows, cols);
  const kernels::ColumnLayout& l = w.layout;
  const kernels::SparseColumnKernels& k = kernels::sparse_column_kernels(host_isa());
  const std::vector<float> x = sparse_input(cols, pct, 3);
  Step s(l);
  std::vector<kernels::InputPair> pairs(static_cast<size_t>(kernels::max_input_pairs(l)));
  std::vector<int32_t> pair_begin(static_cast<size_t>(l.groups()) + 1);
  std::vector<float> scale(static_cast<size_t>(l.groups())), sum(static_cast<size_t>(l.groups()));
  std::vector<float> y(static_cast<size_t>(rows));
  size_t copy = 0;
  for (auto _ : state) {
    select_and_group(k, l, x.data(), s);
    const kernels::ActiveInputs kept{s.index.data(), s.value.data(), s.group_begin.data(), s.group_sum.data()};
    kernels::pair_inputs(l, kept, pairs.data(), pair_begin.data(), scale.data(), sum.data());
    const kernels::PairedInputs in{pairs.data(), pair_begin.data(), scale.data(), sum.data()};
    const uint8_t* columns = w.columns[copy].get();
    pool().parallel_for(l.chunks(),
                        [&](int64_t c0, int64_t c1, int) { k.gemv_nibble_pairs(columns, l, in, c0, c1, y.data()); });
    copy = (copy + 1) % w.columns.size();
    benchmark::ClobberMemory();
  }
  set_counters(state, w.gguf_bytes, sparse_read_bytes(l, s));
}

void bench_dense(benchmark::State& state, DType type, int64_t rows, int64_t cols) {
  Weights& w = weights(type, rows, cols);
  static Workspace scratch;
  const MatmulContext ctx{pool(), scratch, host_isa()};
  const bool panels = matmul_path(type, 1, ctx.isa, ctx.options) != MatmulPath::VecDot;
  if (panels && !w.packed) {  // pack outside the timing
    for (const Weight& v : w.views) v.packed->get(v, pool(), ctx.isa);
    w.packed = true;
  }
  const std::vector<float> x = sparse_input(cols, 100, 3);
  std::vector<float> y(static_cast<size_t>(rows));
  size_t copy = 0;
  for (auto _ : state) {
    matmul(ctx, w.views[copy], x.data(), 1, y.data());
    copy = (copy + 1) % w.views.size();
    benchmark::ClobberMemory();
  }
  const size_t read = panels ? kernels::packed_matrix_bytes(*kernels::panel_format(type), rows, cols) : w.gguf_bytes;
  set_counters(state, w.gguf_bytes, read);
}

void bench_select(benchmark::State& state, int64_t cols, int pct) {
  const kernels::SparseColumnKernels& k = kernels::sparse_column_kernels(host_isa());
  const std::vector<float> x = sparse_input(cols, pct, 4);
  std::vector<int32_t> index(static_cast<size_t>(cols));
  std::vector<float> value(static_cast<size_t>(cols));
  for (auto _ : state) {
    benchmark::DoNotOptimize(k.select(x.data(), cols, 0.0f, index.data(), value.data()));
    benchmark::ClobberMemory();
  }
}

int register_all() {
  if (!isa_supported(Isa::Avx2)) return 0;
  struct Shape {
    int64_t rows, cols;
  };
  const Shape shapes[] = {{8960, 1536}, {1536, 8960}};
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0})
    for (const Shape& s : shapes) {
      const std::string tag = std::string(dtype_name(t)) + "/" + std::to_string(s.rows) + "x" + std::to_string(s.cols);
      benchmark::RegisterBenchmark(("dense/" + tag).c_str(), bench_dense, t, s.rows, s.cols)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
      for (int pct = 10; pct <= 100; pct += 10)
        benchmark::RegisterBenchmark(("sparse/" + tag + "/d" + std::to_string(pct)).c_str(), bench_sparse, t, s.rows,
                                     s.cols, pct)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      if (kernels::column_layout(t, s.rows, s.cols).codes != kernels::ColumnCodes::Nibble) continue;
      for (int pct = 10; pct <= 100; pct += 10)
        benchmark::RegisterBenchmark(("sparse_a7/" + tag + "/d" + std::to_string(pct)).c_str(), bench_sparse_a7, t,
                                     s.rows, s.cols, pct)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
    }
  for (int64_t cols : {1536, 8960})
    benchmark::RegisterBenchmark(("sparse_select/" + std::to_string(cols) + "/d50").c_str(), bench_select, cols, 50)
        ->Unit(benchmark::kMicrosecond);
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace kestrel
