#pragma once
// Calibration of CQ codebooks (kv/cq_codebook.h) from a model's own KV cache:
// run text through a Session, read every layer's cached keys and values back
// (post-RoPE keys, as the cache stores them and as the score table of
// kernels/cq_kernels.h needs them), and learn one codebook per (layer, kv
// head, K or V). `kestrel calibrate kv` is the command around it.
//
// The text is the model's own output by default: a few built-in prompts of
// different kinds (prose, code, chat, a list, numbers), each continued by the
// model with seeded sampling, so that no evaluation set (WikiText-2's test
// file) leaks into the codebooks that perplexity is later measured with.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kv/cq_query_moments.h"
#include "kv/cq_sidecar.h"
#include "kv/cq_whitening.h"
#include "kv/kv_compress.h"
#include "runtime/session.h"

namespace kestrel {

using CqProgressFn = std::function<void(const std::string& line)>;

struct CqCalibrationPrompt {
  std::string_view text;
  bool chat = false;  // a user message, rendered with the model's chat template
};
// The built-in prompts, in the order the generation uses them.
std::span<const CqCalibrationPrompt> cq_calibration_prompts();

// Fills the session (from empty) with `n_tokens` positions: prompt after
// prompt, each continued by the model (temperature 0.8, seeded per prompt
// from `seed`) until the total is reached. Returns the tokens, as the history.
std::vector<int32_t> generate_calibration_text(Session& session, int64_t n_tokens, uint64_t seed,
                                               const CqProgressFn& progress = {});

// Fills the session (from empty) with the first `n_tokens` tokens of `text`
// (all of them when shorter). Returns the number of positions cached.
int64_t evaluate_calibration_text(Session& session, std::string_view text, int64_t n_tokens);

// Rows [0, n) of one kv head's keys (or values) in sequence 0 of an F16 cache,
// as floats: [n][head_dim]. Throws for another element type or a head with
// evicted blocks.
std::vector<float> cached_kv_rows(const KvCache& cache, int layer, int head, bool keys, int64_t n);

// Every kCqHoldoutEvery-th position (p % kCqHoldoutEvery == kCqHoldoutEvery - 1)
// is kept out of k-means and only measured: with 256 centroids per group a
// few thousand rows can be fitted closely, and the held-out error is the one
// that tells whether the calibration saw enough text.
inline constexpr int kCqHoldoutEvery = 8;

struct CqLayerReport {
  int layer = 0;
  // Mean over rows and kv heads of |x - decode(encode(x))| / |x|, on the rows
  // k-means saw (fit) and on the held-out rows (0 when there are none).
  double k_fit = 0.0, v_fit = 0.0;
  double k_heldout = 0.0, v_heldout = 0.0;
  int64_t n_fit = 0, n_heldout = 0;  // rows
  double mean_iterations = 0.0;      // Lloyd steps per block (the mean over its stages)
  int at_cap = 0;                    // blocks that ran max_iterations steps
};

// What learn_cq_layer fits its codebooks for, beyond plain squared distance
// over every row.
struct CqLearnOptions {
  // The moments of the queries of the same forward passes: keys learnt and
  // coded under the query metric (kv/cq_whitening.h, with `ridge`).
  const CqQueryMoments* queries = nullptr;
  double ridge = kCqDefaultRidge;
  // cq_output_moments of this layer: values under the output metric.
  std::span<const double> value_moments = {};
  // The squared attention each cached row received from the queries of the
  // same forward passes (kv/kv_compress.h's EvictionMetric, observing from
  // position 0): rows are weighted in k-means by their metric plus
  // `attention_floor` times the mean metric of the head's fitted rows. Why:
  // a row's error reaches the attention output in proportion to its
  // probability (V: sum_j p_j e_j; K: dp_j = p_j (ds_j - sum_i p_i ds_i)), so the
  // expected squared error of a row scales with p^2 summed over the queries;
  // the gradient-free stand-in for the paper's Fisher weights (squared
  // gradients). The floor keeps rarely read rows in the fit: the calibration
  // text's queries are not the user's.
  const EvictionMetric* attention = nullptr;
  double attention_floor = 1.0;
  // Rows [0, first_row) are neither fitted nor measured: the cache keeps them
  // in F16 and never reads their codes (KvCq::sink, the attention sinks).
  int64_t first_row = 0;
};

// Learns layer `layer`'s codebooks of `books` from rows [first_row, n) of the
// cache (sequence 0; held-out rows below excepted), one task per (kv head, K
// or V, block: a group, or a group's residual stages) on the pool. Block b of
// head h's K (kv = 0) or V (kv = 1) is seeded with
// mix_seed(mix_seed(mix_seed(seed, layer), 2 h + kv), b): the result does not
// depend on the thread count. The books' stages decide the blocks; with a
// metric, the query moments (or value moments) are per block of
// CqCodebook::width() channels. Without options, plain squared
// distance over every row.
CqLayerReport learn_cq_layer(const KvCache& cache, int64_t n, int layer, uint64_t seed, int max_iterations,
                             ThreadPool& pool, CqCodebooks& books, const CqLearnOptions& options = {});

// The values' output metric of one layer, [kv head][group][c][c]: an error e in
// group g of a value row reaches the layer's output through the output
// projection's columns of each query head reading that kv head, as
// |W_o[:, cols] e|^2, so the moment is the sum over those heads of
// W_o[:, cols]^T W_o[:, cols] (data-free: the attention weights, which scale
// e alike in every channel, are left out).
std::vector<double> cq_output_moments(const gguf::File& model, int layer, int n_head, int n_kv_head, int head_dim,
                                      int c);

}  // namespace kestrel
