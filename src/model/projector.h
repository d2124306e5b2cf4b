#pragma once
// The projections of a decoder layer as a model calls them: plain matmuls,
// or under TEAL (ForwardContext::sparsity) the same with the small inputs of
// the rows it applies to dropped (ops/sparse_matmul.h); a calibration's
// observer (ForwardContext::projection_observer) sees each distinct input first.
#include <span>

#include "model/activation_sparsity.h"
#include "model/model.h"

namespace kestrel {

class Projector {
 public:
  Projector(ForwardContext& ctx, const Batch& batch);

  // y [T, w.rows] = x · wᵀ (+ bias): projection p of `layer`, x [T, w.cols].
  void operator()(int layer, Projection p, const Weight& w, const float* bias, const float* x, float* y);

  // Projections reading one input (Q/K/V, Gate/Up): outs[0].p names the input to the observer.
  struct Out {
    Projection p;
    const Weight* w;
    const float* bias;  // nullptr: none
    float* y;
  };
  void shared(int layer, std::span<const Out> outs, const float* x);

 private:
  SparseInput input(int layer, Projection p) const;

  ForwardContext& ctx_;
  const Batch& batch_;
  MatmulContext mm_;
  const uint8_t* rows_;  // the rows TEAL applies to (nullptr: all)
};

}  // namespace kestrel
