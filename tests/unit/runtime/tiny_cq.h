#pragma once
// CQ codebooks for a test model (kv=cq2, cq1): learnt by k-means from the
// model's own F16 cache over a short text, as `kestrel calibrate kv -f` does,
// and written as the sidecar next to the model file, where the engine finds it.
#include <string>

#include "kv/cq_sidecar.h"
#include "model/model.h"
#include "platform/thread_pool.h"
#include "runtime/cq_calibration.h"
#include "runtime/session.h"

namespace kestrel::testing {

// Returns the sidecar's path (default_cq_sidecar_path of the model's file).
inline std::string write_cq_sidecar(const Model& model, CqSpec spec) {
  SessionOptions so;
  so.n_ctx = 512;
  Session session(model, so);
  const int64_t n = evaluate_calibration_text(
      session,
      "Calibration text, not the text the tests score: a walk along the river in spring, with the birds "
      "singing in the trees and the water running fast over the stones after the rain of the night before. "
      "The path turns north at the old mill, climbs through the beech wood and comes out on the ridge, where "
      "the wind is cold even in May and the view reaches the sea on a clear day.",
      400);
  CqCodebooks books = make_cq_codebooks(spec, cq_model_info(model.file()));
  ThreadPool pool(1);
  for (int layer = 0; layer < model.config().n_layer; ++layer)
    learn_cq_layer(session.cache(), n, layer, 42, 10, pool, books);
  const std::string path = default_cq_sidecar_path(model.path(), spec);
  save_cq_codebooks(path, books);
  return path;
}

}  // namespace kestrel::testing
