// Quantized KV caches on real activations: the post-RoPE Q, K, V of SmolLM2
// layers 1 and 20 (tests/golden/attention), stored in a cache of each type and
// attended through the picked kernel set (row kernels for every position, and
// the prompt tiles), against a double-precision attention over the captured
// values. Measured by the cosine similarity of each output row to the
// reference (SageAttention's per-layer bar is >= 0.999) and the output's
// relative error (INT-FlashAttention's bar, <= 1e-2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "golden/attention/cache.h"
#include "golden/attention/format.h"
#include "golden/attention/reference.h"
#include "kernels/attention_set.h"
#include "kernels/attention_tiled.h"
#include "kv/attention.h"
#include "kv/kv_cache.h"

namespace kestrel {
namespace {

struct Score {
  double layer_cos = 0;  // cosine of all output rows of the layer, flattened (SageAttention's per-layer measure)
  double min_cos = 1, mean_cos = 0, max_rel = 0;  // per output row
};

Score run(const testing::QkvCapture& c, int li, DType type, bool rotate, bool tiled, kernels::AttentionAlgo algo) {
  const int d = c.head_dim, nh = c.n_heads, n = c.n_pos;
  // V F16 under sage (the smoothed K is what is measured); K and V of `type` otherwise.
  const DType vt = algo == kernels::AttentionAlgo::Sage ? DType::F16 : type;
  KvCache cache(KvShape{1, nh, d, n, 1}, type, vt, best_isa(), rotate, kernels::smooths_keys(type, algo));
  testing::store_capture(cache, c, li);
  const auto& set = kernels::attention_kernel_set(type, vt, algo, best_isa());
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const AttentionParams ap{nh, nh, d, scale};
  std::vector<float> out(size_t(n) * d);
  Score s;
  double cos_sum = 0, all_dot = 0, all_nw = 0, all_ng = 0;
  for (int h = 0; h < nh; ++h) {
    if (tiled) {
      std::vector<float> scratch(kernels::tile_scratch_floats(d));
      for (int p0 = 0; p0 < n; p0 += kernels::kMaxTileRows) {
        const int rows = std::min(kernels::kMaxTileRows, n - p0);
        const float* q[kernels::kMaxTileRows];
        float* o[kernels::kMaxTileRows];
        int64_t vis[kernels::kMaxTileRows];
        for (int r = 0; r < rows; ++r) {
          q[r] = c.q(li, p0 + r, h);
          o[r] = &out[size_t(p0 + r) * d];
          vis[r] = p0 + r + 1;
        }
        set.tile(head_rows(cache.view(0, 0, h)), d, kernels::TileRows{q, o, vis, rows}, scale, scratch.data());
      }
    } else {
      for (int p = 0; p < n; ++p) attend_head(cache, 0, 0, ap, h, c.q(li, p, h), p + 1, &out[size_t(p) * d], set);
    }
    for (int p = 0; p < n; ++p) {
      const std::vector<double> want = testing::reference_attention(c, li, h, p, scale);
      double dot = 0, nw = 0, ng = 0, err = 0;
      for (int i = 0; i < d; ++i) {
        const double w = want[i], g = out[size_t(p) * d + i];
        dot += w * g;
        nw += w * w;
        ng += g * g;
        err += (g - w) * (g - w);
      }
      all_dot += dot;
      all_nw += nw;
      all_ng += ng;
      const double cs = dot / std::sqrt(nw * ng);
      s.min_cos = std::min(s.min_cos, cs);
      cos_sum += cs;
      s.max_rel = std::max(s.max_rel, std::sqrt(err / nw));
    }
  }
  s.mean_cos = cos_sum / (double(nh) * n);
  s.layer_cos = all_dot / std::sqrt(all_nw * all_ng);
  return s;
}

const testing::QkvCapture& capture() {
  static const testing::QkvCapture c =
      testing::read_qkv(std::string(KESTREL_SOURCE_DIR) + "/tests/golden/attention/smollm2_qkv.bin");
  return c;
}

TEST(AttentionGolden, QuantizedCachesOnRealSmolLM2Activations) {
  const auto& c = capture();
  ASSERT_EQ(c.head_dim, 64);
  struct Case {
    DType type;
    bool rotate;
    double layer_cos;  // the per-layer bar each case must keep
    kernels::AttentionAlgo algo = kernels::AttentionAlgo::Exact;
  };
  // f16, bf16 and q8_0 (rotated or not) keep SageAttention's per-layer 0.999;
  // q5_1 and q4_0 do not, and are held to what they measure, with margin (their
  // PPL cost: docs/benchmarks.md). Row minima are printed, not checked: a few
  // rows whose output is near zero have a poor cosine under any rounding.
  const Case cases[] = {{DType::F16, true, 0.99999},
                        {DType::BF16, true, 0.9995},
                        {DType::Q8_0, true, 0.999},
                        {DType::Q8_0, false, 0.999},
                        {DType::Q5_1, true, 0.99},
                        {DType::Q4_0, true, 0.97},
                        {DType::Q4_0, false, 0.95},
                        // attn=sage over a smoothed q8_0 K (kv/kv_cache.h), V F16: measured
                        // rows 0.999986 / 0.999969 (layers 1 / 20), tiles 0.999986 / 0.999956;
                        // llama.cpp's q8_0 K (exact, unsmoothed) rows 0.999968 / 0.999923.
                        {DType::Q8_0, true, 0.99995, kernels::AttentionAlgo::Sage},
                        // attn=int8 over q8_0 K (smoothed) and V: integer P.V
                        // (attention_quant.h).
                        {DType::Q8_0, true, 0.999, kernels::AttentionAlgo::Int8}};
  for (size_t li = 0; li < c.layers.size(); ++li)
    for (const Case& k : cases)
      for (bool tiled : {false, true}) {
        const Score s = run(c, static_cast<int>(li), k.type, k.rotate, tiled, k.algo);
        const std::string what = "layer " + std::to_string(c.layers[li].layer) + " " + std::string(dtype_name(k.type)) +
                                 (k.rotate ? "" : " unrotated") +
                                 (k.algo == kernels::AttentionAlgo::Sage ? " sage (smoothed K)" : "") +
                                 (k.algo == kernels::AttentionAlgo::Int8 ? " int8 (smoothed K, integer PV)" : "") +
                                 (tiled ? " tiles" : " rows");
        std::cout << what << ": layer cos " << s.layer_cos << ", rows: min cos " << s.min_cos << " mean cos "
                  << s.mean_cos << " max rel err " << s.max_rel << "\n";
        EXPECT_GE(s.layer_cos, k.layer_cos) << what;
      }
}

}  // namespace
}  // namespace kestrel
