#pragma once
// y = x · Wᵀ for a quantized weight: x [n_tokens, cols] f32, y [n_tokens, rows] f32.
// Activations are first quantized to the format the weight's dot product wants
// (Q8_0, Q8_1, Q8_K, F16, ...), as llama.cpp does, so results match its numerics.
//
// Three paths:
//  - formats with panels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
//    Q6_K, IQ4_NL, IQ4_XS) on an Isa with panel kernels: the panel GEMM of
//    kernels/packed_gemm.h on a copy of the weight repacked once, on first use,
//    into 16-row panels (PackedWeight below) (AVX-512 VNNI, or AVX2 maddubs; AMX-INT8 tiles for 16-token tiles on
//    request, see AmxUse), for every batch size including decode. The mapped
//    GGUF pages of such a weight are dropped once it is packed (Weight::mapped).
//  - F16 and BF16 on AVX2 and AVX-512: a rows x tokens kernel on the GGUF layout
//    (QuantKernels::float_gemm: each weight element widened once per tile of
//    tokens, 4 on AVX2 and 6 on AVX-512; vec_dot's bits).
//  - otherwise (other formats, scalar, `matmul=vecdot`): one vec_dot per
//    weight row and token, on the GGUF layout as mapped.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "kernels/packed_gemm.h"
#include "kernels/quant_kernels.h"
#include "ops/weight.h"
#include "ops/workspace.h"
#include "platform/cpu.h"
#include "platform/mmap.h"
#include "platform/thread_pool.h"

namespace kestrel {

// Whether batches may use the AMX-INT8 kernel. Off by default because on this
// project's machine it measured no faster than the VNNI kernel
// (docs/performance.md); `matmul=amx` turns it on.
enum class AmxUse { Never, Always };

// The kernel choice a session runs with (the `matmul` switch).
struct MatmulOptions {
  bool allow_panels = true;      // false: every batch takes vec_dot on the GGUF rows
  AmxUse amx = AmxUse::Never;    // Always: AMX tiles for whole 16-token tiles
  // Every token of a batch takes the kernel a one-token batch takes, so that
  // its logits are bit for bit those of a decode step: speculative decoding's
  // verification passes (runtime/session.h Session::verify). The panel kernels
  // give a batch's rows those bits at every batch size (kernels/packed_gemm.h);
  // a path chosen by batch size (a one-token gemv, AMX from 16 tokens) need not.
  bool decode_kernels = false;
  // Activation codes (the `act` switch): 8 (the formats' own int8 codes) or 4
  // (W4A4: the same blocks holding codes in [-7, 7], scale amax / 7; every
  // integer kernel runs unchanged). Weights with float activations (F32, F16,
  // BF16) would keep them: the engine core refuses such models at 4 bits.
  int activation_bits = 8;
};

// The activation quantizer a matmul uses for `act` (a table of an activation
// format: Q8_0, Q8_1, Q8_K, or a float type).
kernels::QuantizeRowFn activation_quantizer(const kernels::QuantKernels& act, const MatmulOptions& options);

struct MatmulContext {
  ThreadPool& pool;
  Workspace& scratch;
  Isa isa;
  MatmulOptions options = {};  // choice of the batched paths (switch, benchmarks, A/B runs)
};

// Builds w's panel copy now if batches would use it (and drops its mapped
// pages), so that the first request does not pay for the packing.
void prepare_weight(const MatmulContext& ctx, const Weight& w);

void matmul(const MatmulContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y);

// y[t, r] += bias[r] for the n_tokens rows of a matmul's output (nothing for a null bias).
void add_bias(const Weight& w, const float* bias, int64_t n_tokens, float* y);

// The same as matmul, with a bias [rows] added to every output row (qwen2's QKV projections).
void matmul_bias(const MatmulContext& ctx, const Weight& w, const float* bias, const float* x,
                 int64_t n_tokens, float* y);

// One weight of a matmul_shared_input call: y [n_tokens, w->rows] = x · wᵀ (+ bias).
struct SharedInputOutput {
  const Weight* w;
  const float* bias;  // [w->rows] or nullptr
  float* y;
};

// The same as one matmul_bias per output, with the activations quantized once
// and the weights run in one parallel region when they all take the panel path
// with the same activation format (QKV, gate and up): the same bits, one
// thread-pool synchronisation per call at decode instead of one per weight.
// Otherwise one matmul_bias each.
void matmul_shared_input(const MatmulContext& ctx, std::span<const SharedInputOutput> outs, const float* x,
                         int64_t n_tokens);

// Which kernel matmul uses for a weight type, batch size and Isa.
enum class MatmulPath { VecDot, Panels, PanelsAmx };
MatmulPath matmul_path(DType type, int64_t n_tokens, Isa isa, const MatmulOptions& options = {});

// A weight in panel layout: panels() panels of panel_bytes() bytes each.
class PackedWeight {
 public:
  PackedWeight(const kernels::PanelFormat& format, int64_t rows, int64_t cols);
  ~PackedWeight();
  PackedWeight(const PackedWeight&) = delete;
  PackedWeight& operator=(const PackedWeight&) = delete;

  const kernels::PanelFormat& format() const { return format_; }
  int64_t panels() const { return panels_; }
  size_t panel_bytes() const { return panel_bytes_; }
  size_t bytes() const { return panel_bytes_ * static_cast<size_t>(panels_); }
  const uint8_t* panel(int64_t p) const { return data_.data() + static_cast<size_t>(p) * panel_bytes_; }
  uint8_t* data() { return data_.data(); }

 private:
  const kernels::PanelFormat& format_;
  int64_t panels_;
  size_t panel_bytes_;
  // Written whole once, then streamed by every matmul: on huge pages.
  ZeroedPages data_;
};

// Owned by a Weight (ops/weight.h); builds its PackedWeight once, thread-safely.
class PackedWeightSlot {
 public:
  // The packed copy of w (w must be the weight owning this slot), repacked on
  // the first call with `pool`'s threads; later calls return it at once. When
  // every batch size takes the panels at `isa` (decode included), the mapped
  // GGUF pages are dropped once packed.
  const PackedWeight& get(const Weight& w, ThreadPool& pool, Isa isa);
  bool built() const { return ready_.load(std::memory_order_acquire) != nullptr; }

 private:
  std::once_flag once_;
  std::unique_ptr<PackedWeight> packed_;
  std::atomic<const PackedWeight*> ready_{nullptr};
};

// Bytes held by all live PackedWeights of the process: the memory the batched
// path adds on top of the mapped model file.
size_t packed_weight_bytes();

}  // namespace kestrel
