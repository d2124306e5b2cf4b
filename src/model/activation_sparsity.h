#pragma once
// TEAL (PAPERS.md card 7) as the model sees it: one threshold per (layer,
// projection), below which a projection's inputs count as zero, and the hooks
// a calibration uses to watch those inputs. runtime/teal.h makes the table
// from a calibrated sidecar; the model hands each projection its threshold
// (model/projector.h), and ops/sparse_matmul.h turns the dropped inputs into
// weight columns not read.
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "model/batch.h"
#include "ops/sparse_matmul.h"

namespace kestrel {

// The projections whose inputs TEAL thins, in a decoder layer. Q, K and V
// share their input, as do Gate and Up, but each has its own threshold.
enum class Projection : uint8_t { Q, K, V, O, Gate, Up, Down };
inline constexpr int kProjections = 7;
inline constexpr std::array<Projection, kProjections> kAllProjections = {
    Projection::Q, Projection::K, Projection::V, Projection::O, Projection::Gate, Projection::Up, Projection::Down};
std::string_view projection_name(Projection p);  // "q", "k", "v", "o", "gate", "up", "down"

struct ActivationSparsity {
  int n_layer = 0;
  std::vector<float> threshold;  // [n_layer][kProjections]; 0 = dense
  // Which rows of a batch drop their small inputs: false, those of decode
  // steps (Batch::generated); true, every row (perplexity scores each token as
  // if it had been decoded under TEAL, as the paper measures it).
  bool all_rows = false;
  double max_density = 1.0;  // ops/sparse_matmul.h SparseInput::max_density
  bool paired = false;       // SparseInput::paired
  mutable SparsityCounter counter;

  float at(int layer, Projection p) const {
    return threshold[static_cast<size_t>(layer) * kProjections + static_cast<size_t>(p)];
  }
};

// Sees each distinct projection input of a forward pass before it is thinned
// (TEAL calibration's statistics): `first` is the first projection reading it
// (Q for Q/K/V, Gate for Gate/Up), x is [n_tokens, cols].
class ProjectionObserver {
 public:
  virtual ~ProjectionObserver() = default;
  virtual void observe(int layer, Projection first, const Batch& batch, const float* x, int64_t cols) = 0;
};

}  // namespace kestrel
