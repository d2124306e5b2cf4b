#include "ops/sparse_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace kestrel {
namespace {

std::atomic<size_t> g_column_bytes{0};

bool applies(const SparseInput& in, int64_t t) { return !in.rows || in.rows[t] != 0; }

void count(const SparseInput& in, const Weight& w, int64_t kept) {
  if (!in.counter) return;
  const auto rows = static_cast<uint64_t>(w.rows);
  in.counter->skipped.fetch_add(static_cast<uint64_t>(w.cols - kept) * rows, std::memory_order_relaxed);
  in.counter->total.fetch_add(static_cast<uint64_t>(w.cols) * rows, std::memory_order_relaxed);
}

// The paired kernel: the kept inputs as 7-bit codes, two per multiply.
void paired_gemv(const MatmulContext& ctx, const ColumnWeight& cw, const kernels::ActiveInputs& kept, SparseScratch& s,
                 float* y) {
  const kernels::ColumnLayout& layout = cw.layout();
  const auto groups = static_cast<size_t>(layout.groups());
  s.pairs.resize(static_cast<size_t>(kernels::max_input_pairs(layout)));
  s.pair_begin.resize(groups + 1);
  s.group_scale.resize(groups);
  s.pair_sum.resize(groups);
  kernels::pair_inputs(layout, kept, s.pairs.data(), s.pair_begin.data(), s.group_scale.data(), s.pair_sum.data());
  const kernels::PairedInputs in{s.pairs.data(), s.pair_begin.data(), s.group_scale.data(), s.pair_sum.data()};
  const kernels::PairedGemvFn gemv = kernels::sparse_column_kernels(ctx.isa).gemv_nibble_pairs;
  ctx.pool.parallel_for(layout.chunks(), [&](int64_t c0, int64_t c1, int) { gemv(cw.data(), layout, in, c0, c1, y); });
}

// One token through the input-major copy: only the kept inputs' columns are read.
void sparse_gemv(const MatmulContext& ctx, const ColumnWeight& cw, int64_t kept, bool paired, SparseScratch& s,
                 float* y) {
  const kernels::ColumnLayout& layout = cw.layout();
  const int64_t groups = layout.groups();
  // The paired kernel sums its own codes (pair_inputs): the float sums are the F32 kernels'.
  const bool pairs = paired && layout.codes == kernels::ColumnCodes::Nibble;
  s.group_begin.resize(static_cast<size_t>(groups) + 1);
  s.group_sum.assign(static_cast<size_t>(groups), 0.0f);
  int64_t k = 0;
  for (int64_t g = 0; g < groups; ++g) {
    s.group_begin[static_cast<size_t>(g)] = static_cast<int32_t>(k);
    const int64_t end = (g + 1) * layout.group;
    float sum = 0.0f;
    for (; k < kept && s.index[static_cast<size_t>(k)] < end; ++k)
      if (!pairs) sum += s.value[static_cast<size_t>(k)];
    s.group_sum[static_cast<size_t>(g)] = sum;
  }
  s.group_begin[static_cast<size_t>(groups)] = static_cast<int32_t>(k);
  const kernels::ActiveInputs in{s.index.data(), s.value.data(), s.group_begin.data(), s.group_sum.data()};
  if (pairs) {
    paired_gemv(ctx, cw, in, s, y);
    return;
  }
  const auto& kern = kernels::sparse_column_kernels(ctx.isa);
  const kernels::SparseGemvFn gemv =
      layout.codes == kernels::ColumnCodes::Nibble ? kern.gemv_nibble : kern.gemv_int8;
  ctx.pool.parallel_for(layout.chunks(),
                        [&](int64_t c0, int64_t c1, int) { gemv(cw.data(), layout, in, c0, c1, y); });
}

}  // namespace

std::shared_ptr<ColumnWeightSlot> make_column_weight_slot() { return std::make_shared<ColumnWeightSlot>(); }

size_t column_weight_bytes() { return g_column_bytes.load(std::memory_order_relaxed); }

ColumnWeight::ColumnWeight(const kernels::ColumnLayout& layout)
    : layout_(layout), data_(std::max<size_t>(layout.bytes(), 64), PageSize::Huge) {
  g_column_bytes.fetch_add(layout.bytes(), std::memory_order_relaxed);
}

ColumnWeight::~ColumnWeight() { g_column_bytes.fetch_sub(layout_.bytes(), std::memory_order_relaxed); }

const ColumnWeight& ColumnWeightSlot::get(const Weight& w, ThreadPool& pool) {
  if (const ColumnWeight* c = ready_.load(std::memory_order_acquire)) return *c;
  std::call_once(once_, [&] {
    auto cw = std::make_unique<ColumnWeight>(kernels::column_layout(w.type, w.rows, w.cols));
    uint8_t* out = cw->data();
    const kernels::ColumnLayout& layout = cw->layout();
    pool.parallel_for(layout.chunks(), [&](int64_t c0, int64_t c1, int) {
      kernels::build_columns(w.type, w.data, w.row_stride, layout, c0, c1, out);
    });
    columns_ = std::move(cw);
    ready_.store(columns_.get(), std::memory_order_release);
  });
  return *columns_;
}

void prepare_columns(const MatmulContext& ctx, const Weight& w) {
  if (!w.empty()) w.columns->get(w, ctx.pool);
}

void matmul_sparse_input(const MatmulContext& ctx, const Weight& w, const float* bias, const float* x,
                         int64_t n_tokens, float* y, const SparseInput& in, SparseScratch& s) {
  if (n_tokens <= 0) return;
  bool any = false;
  for (int64_t t = 0; t < n_tokens && in.threshold > 0.0f; ++t) any = any || applies(in, t);
  if (!any) {
    matmul_bias(ctx, w, bias, x, n_tokens, y);
    return;
  }
  const int64_t cols = w.cols;
  if (n_tokens > 1 && in.rows_as_steps) {
    SparseInput one = in;
    one.rows = nullptr;
    one.rows_as_steps = false;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * cols;
      float* yt = y + t * w.rows;
      if (applies(in, t))
        matmul_sparse_input(ctx, w, bias, xt, 1, yt, one, s);
      else
        matmul_bias(ctx, w, bias, xt, 1, yt);
    }
    return;
  }
  if (n_tokens == 1) {
    s.index.resize(static_cast<size_t>(cols));
    s.value.resize(static_cast<size_t>(cols));
    const int64_t kept =
        kernels::sparse_column_kernels(ctx.isa).select(x, cols, in.threshold, s.index.data(), s.value.data());
    count(in, w, kept);
    if (static_cast<double>(kept) <= in.max_density * static_cast<double>(cols)) {
      sparse_gemv(ctx, w.columns->get(w, ctx.pool), kept, in.paired, s, y);
      add_bias(w, bias, 1, y);
      return;
    }
  }
  // The dense kernels on a copy whose dropped inputs are zero.
  s.masked.assign(x, x + n_tokens * cols);
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (!applies(in, t)) continue;
    float* row = &s.masked[static_cast<size_t>(t * cols)];
    int64_t kept = 0;
    for (int64_t j = 0; j < cols; ++j) {
      if (std::fabs(row[j]) <= in.threshold) row[j] = 0.0f;
      else ++kept;
    }
    if (n_tokens > 1) count(in, w, kept);
  }
  matmul_bias(ctx, w, bias, s.masked.data(), n_tokens, y);
}

}  // namespace kestrel
