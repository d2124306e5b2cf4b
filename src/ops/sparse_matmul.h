#pragma once
// TEAL (PAPERS.md card 7): a projection whose small inputs count as zero.
// A decode step (one token) reads only the weight columns of the inputs it
// keeps, from the weight's input-major copy (kernels/sparse_columns.h). A
// denser input, or a batch of several tokens (a prompt scored as if decoded,
// a server step, a speculative verification), runs the dense kernels on the
// masked input: the same product, no memory saved.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/sparse_columns.h"
#include "ops/matmul.h"
#include "ops/weight.h"
#include "platform/mmap.h"

namespace kestrel {

// A weight's input-major copy: layout().bytes() bytes, on huge pages (written
// once, then streamed, as PackedWeight in ops/matmul.h).
class ColumnWeight {
 public:
  explicit ColumnWeight(const kernels::ColumnLayout& layout);
  ~ColumnWeight();
  ColumnWeight(const ColumnWeight&) = delete;
  ColumnWeight& operator=(const ColumnWeight&) = delete;

  const kernels::ColumnLayout& layout() const { return layout_; }
  const uint8_t* data() const { return data_.data(); }
  uint8_t* data() { return data_.data(); }

 private:
  kernels::ColumnLayout layout_;
  ZeroedPages data_;
};

// Owned by a Weight (ops/weight.h); builds its ColumnWeight once, thread-safely.
class ColumnWeightSlot {
 public:
  // Built from the GGUF rows on the first call with `pool`'s threads (before
  // the panels drop the mapped pages, when prepare_columns runs first).
  const ColumnWeight& get(const Weight& w, ThreadPool& pool);
  bool built() const { return ready_.load(std::memory_order_acquire) != nullptr; }

 private:
  std::once_flag once_;
  std::unique_ptr<ColumnWeight> columns_;
  std::atomic<const ColumnWeight*> ready_{nullptr};
};

// Bytes held by all live ColumnWeights of the process: what TEAL adds on top
// of the model file and the panels (prompts still read the dense layout).
size_t column_weight_bytes();

// Weight elements the masked rows' projections could skip, and all they would
// read densely: skipped / total is the sparsity a run measured, weighted as
// the memory it saves.
struct SparsityCounter {
  std::atomic<uint64_t> skipped{0};
  std::atomic<uint64_t> total{0};
  SparsityCounter() = default;
  SparsityCounter(const SparsityCounter& o)
      : skipped(o.skipped.load(std::memory_order_relaxed)), total(o.total.load(std::memory_order_relaxed)) {}
  SparsityCounter& operator=(const SparsityCounter& o) {
    skipped.store(o.skipped.load(std::memory_order_relaxed), std::memory_order_relaxed);
    total.store(o.total.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
  double sparsity() const {
    const uint64_t t = total.load(std::memory_order_relaxed);
    return t ? static_cast<double>(skipped.load(std::memory_order_relaxed)) / static_cast<double>(t) : 0.0;
  }
};

// What one projection's input may drop.
struct SparseInput {
  float threshold = 0.0f;          // inputs with |x| <= threshold are dropped; 0: none (dense)
  const uint8_t* rows = nullptr;   // per batch row, 1 where it applies; nullptr: every row
  double max_density = 1.0;        // a decode step keeping more of its inputs takes the dense kernels
  SparsityCounter* counter = nullptr;
  // 4-bit weights take the kept inputs as 7-bit codes, two per multiply
  // (kernels/sparse_columns.h InputPair; `teal_act=a7`); other formats and false: F32.
  bool paired = false;
  // Several rows: each applying row as a one-token decode step would run it
  // (the sparse kernels below max_density), not the dense kernels on the
  // masked rows. Perplexity's scoring of paired codes, which only the sparse
  // kernels use (Projector sets it with ActivationSparsity::all_rows).
  bool rows_as_steps = false;
};

// Reusable buffers of matmul_sparse_input (ForwardScratch holds one).
struct SparseScratch {
  std::vector<float> masked, value, group_sum, group_scale, pair_sum;
  std::vector<int32_t> index, group_begin, pair_begin;
  std::vector<kernels::InputPair> pairs;
};

// Builds w's input-major copy now (TEAL sessions call it before prepare_weight).
void prepare_columns(const MatmulContext& ctx, const Weight& w);

// y [n_tokens, w.rows] = drop(x) · wᵀ (+ bias [w.rows]), drop() zeroing the
// inputs at or below the threshold in the rows it applies to.
void matmul_sparse_input(const MatmulContext& ctx, const Weight& w, const float* bias, const float* x,
                         int64_t n_tokens, float* y, const SparseInput& in, SparseScratch& scratch);

}  // namespace kestrel
