#pragma once
// `kestrel dump-features`: the training data of an EAGLE-3 head
// (tools/eagle3/train.py). For every position of every text it records the
// token, the target's greedy next token, and the target's residual stream at
// three layers (the head's features; model/hidden_tap.h). The directory:
//   meta.json        {"target", "n_embd", "layers", "n_vocab", "n_rows", "n_seqs"}
//   tokens.i32       int32 [n_rows]: the texts' tokens, concatenated
//   argmax.i32       int32 [n_rows]: the target's argmax after each position
//   features.f16     float16 [n_rows, 3 * n_embd]: layers in meta order
//   seq_starts.i64   int64 [n_seqs + 1]: text i is rows [s[i], s[i+1])
// All little-endian, as the machine writes them (x86).
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/session.h"

namespace kestrel {

struct FeatureDumpOptions {
  std::vector<int> layers;    // empty: llama.cpp's default [2, n_layer / 2, n_layer - 3]
  int64_t max_tokens = 2048;  // a longer text is cut to its first max_tokens
  int64_t chunk = 64;         // tokens per forward pass (all of their logits are read)
};

struct FeatureDumpStats {
  int64_t rows = 0, seqs = 0;
  std::vector<int> layers;
};

// The layers the options name, or the default for this model; throws for ids outside [0, n_layer].
std::vector<int> feature_layers(const Model& model, const FeatureDumpOptions& options);

// progress(texts done, rows written). Throws kestrel::Error when dir cannot be written.
FeatureDumpStats dump_features(const Model& model, const SessionOptions& session,
                               std::span<const std::vector<int32_t>> texts, const FeatureDumpOptions& options,
                               const std::string& dir, const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace kestrel
