// kestrel dump-features -m TARGET -f texts.jsonl -o DIR: an EAGLE-3 head's
// training data (runtime/feature_dump.h; tools/eagle3/train.py reads it).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/feature_dump.h"

namespace kestrel::cli {

void add_dump_features_command(CLI::App& app) {
  struct Opts {
    ModelFlags model;
    std::string file, out;
    std::vector<int> layers;
    int64_t max_tokens = 2048;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("dump-features",
                                 "write an EAGLE-3 head's training data: a target's hidden states at 3 layers");
  add_model_flags(*cmd, o->model);
  cmd->add_option("-f,--file", o->file, "JSONL, one {\"text\": ...} per line (special tokens are parsed)")->required();
  cmd->add_option("-o,--output", o->out, "output directory")->required();
  cmd->add_option("--layers", o->layers, "three target layers (default 2, n_layer/2, n_layer-3)")->delimiter(',');
  cmd->add_option("--max-tokens", o->max_tokens, "tokens per text at most (longer texts are cut)");
  cmd->callback([o] {
    std::ifstream in(o->file);
    if (!in) fail("dump-features: cannot read ", o->file);
    auto model = load_model_verbose(o->model);
    std::vector<std::vector<int32_t>> texts;
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty()) continue;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string())
        fail("dump-features: ", o->file, " line ", line_no, " is not a JSON object with a string \"text\"");
      texts.push_back(model->tokenizer().encode(j["text"].get<std::string>(), true, true));
    }
    FeatureDumpOptions options;
    options.layers = o->layers;
    options.max_tokens = o->max_tokens;
    const auto t0 = std::chrono::steady_clock::now();
    const FeatureDumpStats stats =
        dump_features(*model, session_options(o->model), texts, options, o->out, [&](int64_t done, int64_t rows) {
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (done % 10 == 0 || done == static_cast<int64_t>(texts.size()))
            std::fprintf(stderr, "\rdump-features: %lld/%zu texts, %lld tokens, %.0f tokens/s   ",
                         static_cast<long long>(done), texts.size(), static_cast<long long>(rows), rows / s);
        });
    std::fprintf(stderr, "\ndump-features: %lld texts, %lld rows, layers %d,%d,%d -> %s\n",
                 static_cast<long long>(stats.seqs), static_cast<long long>(stats.rows), stats.layers[0],
                 stats.layers[1], stats.layers[2], o->out.c_str());
  });
}

}  // namespace kestrel::cli
