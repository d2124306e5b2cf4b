#include "model/projector.h"

#include <algorithm>

namespace kestrel {

std::string_view projection_name(Projection p) {
  static constexpr std::string_view kNames[kProjections] = {"q", "k", "v", "o", "gate", "up", "down"};
  return kNames[static_cast<size_t>(p)];
}

Projector::Projector(ForwardContext& ctx, const Batch& batch)
    : ctx_(ctx),
      batch_(batch),
      mm_{ctx.pool, ctx.scratch.workspace, ctx.isa, ctx.matmul},
      rows_(ctx.sparsity && !ctx.sparsity->all_rows ? batch.generated.data() : nullptr) {}

SparseInput Projector::input(int layer, Projection p) const {
  const ActivationSparsity* s = ctx_.sparsity;
  if (!s) return {};
  return SparseInput{s->at(layer, p), rows_, s->max_density, &s->counter, s->paired, s->all_rows && s->paired};
}

void Projector::operator()(int layer, Projection p, const Weight& w, const float* bias, const float* x, float* y) {
  if (ctx_.projection_observer) ctx_.projection_observer->observe(layer, p, batch_, x, w.cols);
  matmul_sparse_input(mm_, w, bias, x, batch_.size(), y, input(layer, p), ctx_.scratch.sparse);
}

void Projector::shared(int layer, std::span<const Out> outs, const float* x) {
  if (outs.empty()) return;
  if (ctx_.projection_observer) ctx_.projection_observer->observe(layer, outs[0].p, batch_, x, outs[0].w->cols);
  if (!ctx_.sparsity) {
    // Every decode step of every layer comes here: no allocation.
    constexpr size_t kMaxShared = 3;  // Q, K, V
    SharedInputOutput plain[kMaxShared];
    const size_t n = std::min(outs.size(), kMaxShared);
    for (size_t i = 0; i < n; ++i) plain[i] = {outs[i].w, outs[i].bias, outs[i].y};
    matmul_shared_input(mm_, std::span<const SharedInputOutput>(plain, n), x, batch_.size());
    for (size_t i = n; i < outs.size(); ++i) matmul_bias(mm_, *outs[i].w, outs[i].bias, x, batch_.size(), outs[i].y);
    return;
  }
  for (const Out& o : outs)
    matmul_sparse_input(mm_, *o.w, o.bias, x, batch_.size(), o.y, input(layer, o.p), ctx_.scratch.sparse);
}

}  // namespace kestrel
