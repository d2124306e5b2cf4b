#pragma once
// Activation-aware weight quantization (AWQ, Lin et al. 2024) on a float
// decoder: for each group of matrices that read one input (q/k/v; gate/up;
// down; the attention output), a per-input-channel scale s = mean|x|^α
// (normalized to a geometric mean of 1 between the extremes) multiplies the
// weight columns before rounding, and 1/s folds into what produces the input:
//
//   q, k, v    <- attn_norm's weight       gate, up <- ffn_norm's weight
//   down       <- up's rows                o        <- v's rows (and bias)
//
// so the model computes the same function before rounding, while channels
// that carry large activations round with finer steps. Then, as AWQ's
// auto-clip does, each block of a 32-element format (Q4_0, Q4_1, Q5_*, Q8_0,
// IQ4_NL) clips its weights to the share of their largest magnitude that
// minimizes the block's output error δᵀ C δ (C = Σ x xᵀ of the block's
// inputs); K-quants search their own scales and are not clipped. α is searched on a
// grid per group, scoring |(Ŵ - W) X|² on recorded inputs X, where Ŵ is the
// rounded-and-unscaled weight in the type the file will store. With grouped
// query attention, several heads read one value head, so the o scales are
// shared across the heads of a group (one scale per kv head and channel).
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/activation_sparsity.h"
#include "model/float_decoder.h"

namespace kestrel {

class DecoderRotation;
class ThreadPool;

// The four inputs AWQ scales, in a decoder layer.
enum class AwqInput : uint8_t { Attention, Output, Mlp, Down };
inline constexpr int kAwqInputs = 4;
std::string_view awq_input_name(AwqInput in);  // "qkv", "o", "gate/up", "down"

// Records up to `samples` positions' inputs per (layer, AwqInput): the
// positions 0, stride, 2 stride, ... (a position seen twice overwrites).
class AwqInputs final : public ProjectionObserver {
 public:
  AwqInputs(const ModelConfig& config, int64_t samples, int64_t stride);
  void observe(int layer, Projection first, const Batch& batch, const float* x, int64_t cols) override;

  int64_t samples() const;  // positions recorded so far (the smallest index not yet seen)
  int64_t cols(AwqInput in) const { return cols_[static_cast<size_t>(in)]; }
  // [samples() x cols] rows of one input.
  std::vector<float>& rows(int layer, AwqInput in) { return x_[index(layer, in)]; }
  const std::vector<float>& rows(int layer, AwqInput in) const { return x_[index(layer, in)]; }

  // The inputs as the rotated model sees them.
  void rotate(const DecoderRotation& rotation);
  // The down projection's inputs after its online Hadamard transform (rotate_down_input).
  void rotate_down(int block);

 private:
  size_t index(int layer, AwqInput in) const {
    return static_cast<size_t>(layer) * kAwqInputs + static_cast<size_t>(in);
  }
  int64_t max_samples_, stride_;
  std::array<int64_t, kAwqInputs> cols_{};
  std::vector<std::vector<float>> x_;  // [layer][input]: max_samples x cols
  std::vector<uint8_t> seen_;          // [sample]
};

struct AwqOptions {
  int grid = 20;           // α in {0, 1/grid, ..., (grid-1)/grid}
  int64_t max_rows = 512;  // rows per matrix the error is scored on (evenly spaced)
  int64_t max_samples = 256;  // recorded positions the error is scored on (evenly spaced; GPTQ records more)
  bool clip = true;        // the clipping search (ratios 1, 0.95, ..., 0.55 of a block's largest magnitude)
  std::array<bool, kAwqInputs> unclipped{};  // inputs whose matrices another rounding sets the grids of (GPTQ)
};

struct AwqGroupReport {
  double alpha = 0.0;
  double error_plain = 0.0;  // relative output error |ΔY|²/|Y|² at α = 0 (plain rounding)
  double error_awq = 0.0;    // the same at the chosen α
  double clipped = 0.0;      // share of blocks clipped below their largest magnitude
};

struct AwqLayerReport {
  int layer = 0;
  std::array<AwqGroupReport, kAwqInputs> groups{};
  double seconds = 0.0;
};

// The type each matrix is rounded to (what quantize_model will write).
using AwqTypeFn = std::function<DType(const FloatTensor& t)>;
using AwqProgressFn = std::function<void(const AwqLayerReport& r)>;

// Searches and folds the scales into d, layer by layer, and divides the
// recorded inputs by them (what the scaled matrices read, for a later GPTQ).
// Throws when `inputs` holds fewer than 16 positions.
std::vector<AwqLayerReport> apply_awq(FloatDecoder& d, AwqInputs& inputs, const AwqTypeFn& type_of,
                                      const AwqOptions& options, ThreadPool& pool, const AwqProgressFn& progress = {});

// |(Ŵ - W) X|² and (with `reference`, else 0) |W X|² over up to max_rows
// evenly spaced rows of w and max_samples evenly spaced rows of x [n x cols];
// rounded(r, out) writes row r of Ŵ. (AWQ's search and GPTQ's report.)
using RoundedRowFn = std::function<void(int64_t row, float* out)>;
std::pair<double, double> projection_error(const FloatTensor& w, const RoundedRowFn& rounded,
                                           const std::vector<float>& x, int64_t n, int64_t max_rows,
                                           int64_t max_samples, bool reference, ThreadPool& pool);

// The matrices of a layer that read `in` (q, k, v; o; gate, up; down).
std::vector<FloatTensor*> matrices_reading(FloatLayer& L, AwqInput in);

// The fold alone (what apply_awq does once it has chosen s): the group's
// matrices' columns times s, 1/s into what produces the input. `s` has the
// input's width (for Output: n_head x head_dim, equal across each kv group).
void fold_awq_scales(FloatLayer& L, const ModelConfig& config, AwqInput in, const std::vector<float>& s);

// The clipping search alone on one matrix rounded to `type` (a no-op for
// block sizes other than 32), on inputs x [n x cols]. Returns the share of
// blocks clipped.
double clip_awq_weights(FloatTensor& w, DType type, const std::vector<float>& x, int64_t n, ThreadPool& pool);

}  // namespace kestrel
