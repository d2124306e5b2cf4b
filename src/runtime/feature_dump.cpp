#include "runtime/feature_dump.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "platform/dispatch.h"
#include "runtime/target_features.h"
#include "sampling/sampler.h"

namespace kestrel {
namespace {

template <typename T>
void write_values(std::ofstream& out, const T* data, size_t n, const std::string& path) {
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
  if (!out) fail("dump-features: cannot write ", path);
}

}  // namespace

std::vector<int> feature_layers(const Model& model, const FeatureDumpOptions& options) {
  const int n_layer = model.config().n_layer;
  std::vector<int> layers = options.layers;
  if (layers.empty()) layers = {std::min(2, n_layer), n_layer / 2, std::max(0, n_layer - 3)};
  if (layers.size() != 3) fail("dump-features: an EAGLE-3 head reads 3 layers, ", layers.size(), " given");
  for (int l : layers)
    if (l < 0 || l > n_layer) fail("dump-features: layer ", l, " is outside [0, ", n_layer, "]");
  return layers;
}

FeatureDumpStats dump_features(const Model& model, const SessionOptions& session_options,
                               std::span<const std::vector<int32_t>> texts, const FeatureDumpOptions& options,
                               const std::string& dir, const std::function<void(int64_t, int64_t)>& progress) {
  FeatureDumpStats stats;
  stats.layers = feature_layers(model, options);
  if (options.chunk < 1 || options.max_tokens < 2) fail("dump-features: chunk and max tokens must be positive");
  std::filesystem::create_directories(dir);
  auto open = [&](const std::string& name) {
    std::ofstream f(dir + "/" + name, std::ios::binary | std::ios::trunc);
    if (!f) fail("dump-features: cannot create ", dir, "/", name);
    return f;
  };
  std::ofstream tokens_out = open("tokens.i32"), argmax_out = open("argmax.i32"), features_out = open("features.f16");

  SessionOptions so = session_options;
  so.n_ctx = std::max<int64_t>(so.n_ctx, options.max_tokens);
  so.engine.decode = {};
  Session session(model, so);
  const int64_t n_embd = model.config().n_embd;
  TargetFeatures tap(stats.layers, n_embd, so.n_ctx, 1, runnable_isa(so.engine.isa));
  session.set_hidden_tap(&tap);
  const int64_t n_vocab = model.config().n_vocab;
  std::vector<int64_t> starts = {0};
  std::vector<int32_t> argmax_ids;
  for (const std::vector<int32_t>& text : texts) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(text.size()), options.max_tokens);
    if (n < 2) continue;  // nothing to learn from one token
    session.clear();
    argmax_ids.clear();
    for (int64_t done = 0; done < n; done += options.chunk) {
      const int64_t m = std::min(options.chunk, n - done);
      const std::vector<float>& logits = session.append_all_logits(std::span<const int32_t>(text).subspan(done, m));
      for (int64_t i = 0; i < m; ++i)
        argmax_ids.push_back(argmax(std::span<const float>(logits).subspan(i * n_vocab, n_vocab)));
    }
    write_values(tokens_out, text.data(), static_cast<size_t>(n), "tokens.i32");
    write_values(argmax_out, argmax_ids.data(), argmax_ids.size(), "argmax.i32");
    const std::span<const uint16_t> features = tap.f16_rows(0, n);
    write_values(features_out, features.data(), features.size(), "features.f16");
    stats.rows += n;
    ++stats.seqs;
    starts.push_back(stats.rows);
    if (progress) progress(stats.seqs, stats.rows);
  }
  std::ofstream starts_out = open("seq_starts.i64");
  write_values(starts_out, starts.data(), starts.size(), "seq_starts.i64");
  nlohmann::json meta = {{"target", model.path()}, {"n_embd", n_embd},     {"layers", stats.layers},
                         {"n_vocab", n_vocab},     {"n_rows", stats.rows}, {"n_seqs", stats.seqs},
                         {"feature_dtype", "f16"}};
  std::ofstream meta_out = open("meta.json");
  meta_out << meta.dump(2) << "\n";
  if (!meta_out) fail("dump-features: cannot write ", dir, "/meta.json");
  return stats;
}

}  // namespace kestrel
