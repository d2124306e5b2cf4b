// Kernel accuracy on real activations at long context (issue 13): the
// captured post-RoPE Q, K, V of SmolLM2-135M (512, 2048 and 8192 positions)
// and Qwen2.5-Coder-0.5B (512 and 2048 positions; its k_proj bias gives every
// key a shared offset) in tests/golden/attention, stored in a KvCache of each
// type and attended through the picked kernel set (row kernels and tiles) for
// the stored query rows, against a double-precision attention over the
// captured values (golden/attention/reference.h).
//
// Per capture file, layer and context (the query rows at positions below 512,
// 2048, 8192 or the capture's length), per case:
//   layer cos   cosine similarity of all output rows of the layer, flattened
//               (SageAttention's per-layer measure; its bar >= 0.999)
//   worst head  the lowest of the same per query head
//   rel err     ||out - ref|| / ||ref|| over the layer's rows
//               (INT-FlashAttention's bar: <= 1e-2)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
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

using kernels::AttentionAlgo;

struct Case {
  const char* name;
  DType k, v;
  bool rotate;  // Hadamard rotation of block-quantized K and V (llama.cpp's
                // default)
  AttentionAlgo algo;
};

// Cosine and relative error, accumulated over output rows.
struct Acc {
  double dot = 0, nw = 0, ng = 0, err = 0;
  void add(const float* out, const std::vector<double>& want) {
    for (size_t i = 0; i < want.size(); ++i) {
      dot += want[i] * out[i];
      nw += want[i] * want[i];
      ng += double{out[i]} * out[i];
      err += (out[i] - want[i]) * (out[i] - want[i]);
    }
  }
  double cos() const { return dot / std::sqrt(nw * ng); }
  double rel() const { return std::sqrt(err / nw); }
};

struct Score {
  double layer_cos = 0, worst_head_cos = 1, rel = 0, worst_head_rel = 0;
};

// The contexts a capture's query rows are grouped by: 512, 2048, 8192 below
// its length, and its length.
std::vector<int> contexts(const testing::QkvCapture& c) {
  std::vector<int> ctx;
  for (int e : {512, 2048, 8192})
    if (e < c.n_pos) ctx.push_back(e);
  ctx.push_back(c.n_pos);
  return ctx;
}
int context_of(const std::vector<int>& ctx, int pos) {
  return *std::find_if(ctx.begin(), ctx.end(), [&](int e) { return pos < e; });
}

struct File {
  std::string name;
  testing::QkvCapture c;
  std::vector<std::vector<std::vector<std::vector<double>>>> ref;  // [layer][q head][row] -> [d]
};

// Every output row of layer li under one case, rows or tiles: out[qi][row] ->
// [d].
std::vector<std::vector<std::vector<float>>> attend(const testing::QkvCapture& c, int li, const Case& k, bool tiled) {
  const int d = c.head_dim, nkv = c.n_heads, n = c.n_pos;
  KvCache cache(KvShape{1, nkv, d, n, 1}, k.k, k.v, best_isa(), k.rotate, kernels::smooths_keys(k.k, k.algo));
  testing::store_capture(cache, c, li);
  const auto& set = kernels::attention_kernel_set(k.k, k.v, k.algo, best_isa());
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int nq = c.n_q_heads(), nr = c.n_q_rows();
  std::vector<std::vector<std::vector<float>>> out(nq, std::vector<std::vector<float>>(nr, std::vector<float>(d)));
  if (!tiled) {
    // Query head qi reads stored KV head kv_of(qi): as query head kv_of(qi) of
    // a model with one query head per KV head.
    const AttentionParams ap{nkv, nkv, d, scale};
    for (int qi = 0; qi < nq; ++qi)
      for (int r = 0; r < nr; ++r)
        attend_head(cache, 0, 0, ap, c.kv_of(qi), c.q(li, r, qi), int64_t{c.q_pos[r]} + 1, out[qi][r].data(), set);
    return out;
  }
  // Tiles: the rows of each KV head's query heads, position by position, up to
  // kMaxTileRows a call.
  std::vector<float> scratch(kernels::tile_scratch_floats(d));
  for (int h = 0; h < nkv; ++h) {
    std::vector<std::pair<int, int>> rows;  // (row, qi)
    for (int r = 0; r < nr; ++r)
      for (int qi = 0; qi < nq; ++qi)
        if (c.kv_of(qi) == h) rows.emplace_back(r, qi);
    for (size_t i0 = 0; i0 < rows.size(); i0 += kernels::kMaxTileRows) {
      const int m = static_cast<int>(std::min<size_t>(kernels::kMaxTileRows, rows.size() - i0));
      const float* q[kernels::kMaxTileRows];
      float* o[kernels::kMaxTileRows];
      int64_t vis[kernels::kMaxTileRows];
      for (int j = 0; j < m; ++j) {
        const auto [r, qi] = rows[i0 + j];
        q[j] = c.q(li, r, qi);
        o[j] = out[qi][r].data();
        vis[j] = int64_t{c.q_pos[r]} + 1;
      }
      set.tile(head_rows(cache.view(0, 0, h)), d, kernels::TileRows{q, o, vis, m}, scale, scratch.data());
    }
  }
  return out;
}

// Scores by context, for layer li.
std::map<int, Score> score(const File& f, int li, const std::vector<std::vector<std::vector<float>>>& out) {
  const auto& c = f.c;
  const std::vector<int> ctx = contexts(c);
  std::map<int, Score> s;
  for (int e : ctx) {
    Acc layer;
    Score& sc = s[e];
    bool any = false;
    for (int qi = 0; qi < c.n_q_heads(); ++qi) {
      Acc head;
      for (int r = 0; r < c.n_q_rows(); ++r)
        if (context_of(ctx, c.q_pos[r]) == e) {
          head.add(out[qi][r].data(), f.ref[li][qi][r]);
          layer.add(out[qi][r].data(), f.ref[li][qi][r]);
          any = true;
        }
      if (head.nw > 0) {
        sc.worst_head_cos = std::min(sc.worst_head_cos, head.cos());
        sc.worst_head_rel = std::max(sc.worst_head_rel, head.rel());
      }
    }
    if (!any) {
      s.erase(e);
      continue;
    }
    sc.layer_cos = layer.cos();
    sc.rel = layer.rel();
  }
  return s;
}

struct Bar {
  double layer_cos, head_cos, rel;
};

// INT-FlashAttention over the F16 cache (on-the-fly INT8 Q, K, V; P at a
// fixed 1/255 scale): the bar, output relative error <= 1e-2, is
// missed almost everywhere, and more so as the context grows (the
// probabilities of a long flat row fall under P's step): pinned at what each
// (file, layer, context) measures (rows and tiles agree), with 20% margin.
// Against the bar: held only by SmolLM2 layer 1 at 512 / 2048 (0.95x / 0.73x);
// missed by 1.6x / 2.8x (SmolLM2 128, layers 1 / 20), 4.9x / 5.8x / 10.8x
// (SmolLM2 layer 20 at 512 / 2048 / 8192), 7.3x / 2.3x (Qwen KV head 1 at 512,
// layers 1 / 20), 2.1x / 1.8x and 4.1x / 4.6x (Qwen KV head 0, layers 1 / 20,
// at 512 / 2048).
double int8_f16_measured_rel(const std::string& file, int layer, int ctx) {
  static const std::map<std::string, double> measured = {
      {"smollm2_qkv.bin/1/128", 1.60e-2},      {"smollm2_qkv.bin/20/128", 2.84e-2},
      {"smollm2_2k_qkv.bin/1/512", 9.50e-3},   {"smollm2_2k_qkv.bin/1/2048", 7.29e-3},
      {"smollm2_8k_qkv.bin/20/512", 4.86e-2},  {"smollm2_8k_qkv.bin/20/2048", 5.79e-2},
      {"smollm2_8k_qkv.bin/20/8192", 1.08e-1}, {"qwen05b_512_qkv.bin/1/512", 7.26e-2},
      {"qwen05b_512_qkv.bin/20/512", 2.33e-2}, {"qwen05b_2k_qkv.bin/1/512", 2.11e-2},
      {"qwen05b_2k_qkv.bin/1/2048", 1.78e-2},  {"qwen05b_2k_qkv.bin/20/512", 4.13e-2},
      {"qwen05b_2k_qkv.bin/20/2048", 4.63e-2},
  };
  const auto it = measured.find(file + "/" + std::to_string(layer) + "/" + std::to_string(ctx));
  return it == measured.end() ? 1e-2 : it->second;  // a new capture starts at the bar
}

// What each case must keep, on every file, layer, context, rows and tiles
// (the lowest cosines and highest errors measured are in the comments).
Bar bar_of(const Case& k, bool tiled, const std::string& file, int layer, int ctx) {
  switch (k.algo) {
    case AttentionAlgo::Exact:
      if (k.k == DType::F16)
        // Tiles: F32 scores and accumulators, rel <= 1.5e-6. Rows: llama.cpp's
        // one-row flash attention, whose V accumulator is F16: rel up to 1.5e-2
        // (SmolLM2 layer 20 at 8192), layer cos >= 0.99991, head >= 0.99974.
        return tiled ? Bar{0.999999, 0.999999, 1e-5} : Bar{0.9998, 0.9995, 0.02};
      // q8_0 K and V, rotated: layer cos >= 0.99972, head >= 0.99964, rel
      // <= 2.4e-2 (Qwen KV head 1, layer 1).
      return Bar{0.9995, 0.9993, 0.03};
    case AttentionAlgo::Sage:
      // The bar, cos >= 0.999 per layer and per head, holds everywhere:
      // over F16 (smoothing on the fly) the lowest are layer 0.99981, head
      // 0.99976 (rel <= 2.0e-2); over the smoothed q8_0 K, 0.99995 and 0.99986
      // (rel <= 1.03e-2).
      return k.k == DType::F16 ? Bar{0.999, 0.999, 0.025} : Bar{0.9999, 0.9997, 0.0125};
    case AttentionAlgo::Int8:
      if (k.k == DType::F16) return Bar{0.993, 0.98, 1.2 * int8_f16_measured_rel(file, layer, ctx)};
      // Over q8_0 K and V (rotated): rel <= 1e-2 nearly holds, missed by up to 5%
      // (1.05e-2, SmolLM2 layer 20 at 8192, tiles); layer cos >= 0.99994, head >=
      // 0.99985.
      return Bar{0.9999, 0.9997, 0.0125};
  }
  return {};
}

TEST(AttentionLongGolden, KernelsOnLongRealActivations) {
  const std::filesystem::path dir = std::filesystem::path(KESTREL_SOURCE_DIR) / "tests" / "golden" / "attention";
  const char* names[] = {"smollm2_qkv.bin", "smollm2_2k_qkv.bin", "smollm2_8k_qkv.bin", "qwen05b_512_qkv.bin",
                         "qwen05b_2k_qkv.bin"};
  std::vector<Case> cases = {
      {"exact f16", DType::F16, DType::F16, false, AttentionAlgo::Exact},
      {"exact q8_0 rot", DType::Q8_0, DType::Q8_0, true, AttentionAlgo::Exact},
      {"sage f16", DType::F16, DType::F16, false, AttentionAlgo::Sage},
      {"sage q8_0K(sm) f16V", DType::Q8_0, DType::F16, true, AttentionAlgo::Sage},
      {"int8 f16", DType::F16, DType::F16, false, AttentionAlgo::Int8},
  };
  // INT-FlashAttention over a q8_0 cache, once its kernels exist.
  if (kernels::has_attention_kernels(DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8))
    cases.push_back({"int8 q8_0 rot", DType::Q8_0, DType::Q8_0, true, AttentionAlgo::Int8});
  else
    std::printf("int8 over q8_0 K and V: no kernels in this build, not measured\n");

  std::printf("%-20s %5s %5s %-20s | %-28s | %-28s | %s\n", "file", "layer", "ctx", "case",
              "rows: cos / worst head / rel", "tiles: cos / worst head / rel", "issue 13's bar");
  for (const char* name : names) {
    File f{name, testing::read_qkv((dir / name).string()), {}};
    const auto& c = f.c;
    ASSERT_EQ(c.head_dim, 64) << name;
    const double scale = 1.0 / std::sqrt(static_cast<float>(c.head_dim));
    for (int li = 0; li < static_cast<int>(c.layers.size()); ++li) {
      auto& rl = f.ref.emplace_back();
      for (int qi = 0; qi < c.n_q_heads(); ++qi) {
        auto& rq = rl.emplace_back();
        for (int r = 0; r < c.n_q_rows(); ++r)
          rq.push_back(testing::reference_attention(c, li, qi, r, static_cast<float>(scale)));
      }
    }
    for (int li = 0; li < static_cast<int>(c.layers.size()); ++li)
      for (const Case& k : cases) {
        const std::map<int, Score> rows = score(f, li, attend(c, li, k, false));
        const std::map<int, Score> tiles = score(f, li, attend(c, li, k, true));
        for (const auto& [ctx, r] : rows) {
          const Score& t = tiles.at(ctx);
          // The bars: sage cos >= 0.999 per layer and head, int8 rel <=
          // 1e-2.
          char note[64] = "";
          if (k.algo == AttentionAlgo::Sage) {
            const double worst = std::min({r.layer_cos, r.worst_head_cos, t.layer_cos, t.worst_head_cos});
            std::snprintf(note, sizeof note, "cos bar 0.999 %s", worst >= 0.999 ? "held" : "MISSED");
          } else if (k.algo == AttentionAlgo::Int8) {
            const double x = std::max(r.rel, t.rel) / 1e-2;
            std::snprintf(note, sizeof note, "rel bar 1e-2 %s %.2fx", x <= 1 ? "held" : "missed", x);
          }
          std::printf(
              "%-20s %5d %5d %-20s | %.6f / %.6f / %.2e | %.6f / %.6f "
              "/ %.2e | %s\n",
              name, c.layers[li].layer, ctx, k.name, r.layer_cos, r.worst_head_cos, r.rel, t.layer_cos,
              t.worst_head_cos, t.rel, note);
          const std::string what = std::string(name) + " layer " + std::to_string(c.layers[li].layer) + " ctx " +
                                   std::to_string(ctx) + " " + k.name;
          for (const Score* s : {&r, &t}) {
            const std::string path = s == &r ? " rows" : " tiles";
            const Bar bar = bar_of(k, s == &t, name, c.layers[li].layer, ctx);
            EXPECT_GE(s->layer_cos, bar.layer_cos) << what << path;
            EXPECT_GE(s->worst_head_cos, bar.head_cos) << what << path;
            EXPECT_LE(s->rel, bar.rel) << what << path;
          }
        }
      }
  }
}

}  // namespace
}  // namespace kestrel
