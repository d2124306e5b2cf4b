// kestrel calibrate kv -m MODEL --cq cq2|cq1: learn a model's CQ codebooks
// (runtime/cq_calibration.h) and write them as the sidecar MODEL.cq2.gguf
// (kv/cq_sidecar.h). Progress on stderr, the per-layer summary on stdout.
// kestrel calibrate teal / text / draft-vocab: TEAL's thresholds, the
// calibration text, a draft vocabulary's token ranking.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "gguf/sidecar.h"
#include "model/draft_vocab_sidecar.h"
#include "runtime/cq_calibration.h"
#include "runtime/teal_calibration.h"
#include "runtime/token_counts.h"

namespace kestrel::cli {
namespace {

struct CalibrateKvOpts {
  std::string model = default_model_path();
  std::string cq = "cq2";
  std::string out, text_file;
  int64_t tokens = 2048;
  uint64_t seed = 42;
  int threads = 0;
  int iterations = 25;
  std::string key_metric = "query";  // better than mse on all three real models (docs/cq_accuracy.md)
  std::string value_metric = "mse";
  int exact_layers = 0;
  int stages = 1;
  double ridge = kCqDefaultRidge;
  std::string row_weights = "uniform";
  double attention_floor = CqLearnOptions{}.attention_floor;
  bool skip_sink = false;
};

void calibrate_kv(const CalibrateKvOpts& o) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  if (!o.text_file.empty()) refuse_evaluation_text(o.text_file, "calibrate");
  if (o.tokens < 16) fail("calibrate: --tokens must be at least 16, got ", o.tokens);
  if (o.iterations < 1) fail("calibrate: --iterations must be at least 1, got ", o.iterations);
  if (o.threads < 0) fail("-t must not be negative, got ", o.threads);
  if (o.key_metric != "query" && o.key_metric != "mse")
    fail("calibrate: --key-metric is query or mse, got '", o.key_metric, "'");
  if (o.value_metric != "output" && o.value_metric != "mse")
    fail("calibrate: --value-metric is output or mse, got '", o.value_metric, "'");
  if (!(o.ridge > 0.0)) fail("calibrate: --ridge must be positive, got ", o.ridge);
  if (o.row_weights != "uniform" && o.row_weights != "attention")
    fail("calibrate: --row-weights is uniform or attention, got '", o.row_weights, "'");
  if (!(o.attention_floor >= 0.0)) fail("calibrate: --attention-floor must not be negative, got ", o.attention_floor);
  const CqSpec spec = parse_cq_spec(o.cq);
  const std::string out = cq_sidecar_path(o.model, spec, o.out);
  if (o.exact_layers < 0) fail("calibrate: --exact-layers must not be negative, got ", o.exact_layers);

  auto model = load_model(o.model);
  if (o.stages < 1) fail("calibrate: --stages must be at least 1, got ", o.stages);
  CqCodebooks books = make_cq_codebooks(spec, cq_model_info(model->file()), o.stages);
  const int width = books.k.front().width();  // channels a centroid covers
  if (o.exact_layers > books.model.n_layer)
    fail("calibrate: --exact-layers ", o.exact_layers, " of a model of ", books.model.n_layer, " layers");
  books.exact_layers = o.exact_layers;
  SessionOptions so;
  so.n_ctx = o.tokens;
  so.engine.n_threads = o.threads;  // F16 keys and values: the defaults, what the collection reads
  Session session(*model, so);
  std::cerr << "calibrate: " << model->config().arch << ", " << books.model.n_layer << " layers x "
            << books.model.n_kv_head << " kv heads x " << books.model.k_head_dim << " channels; " << cq_spec_name(spec)
            << " = " << spec.channels_per_group << " channels in " << spec.bits << " bits, "
            << spec.groups(books.model.k_head_dim) << " codebooks of " << spec.n_codes() << " per head"
            << (o.stages > 1 ? ", in " + std::to_string(o.stages) + " residual stages over blocks of " +
                                   std::to_string(width) + " channels"
                             : "")
            << "\n";

  // The queries of the same passes that fill the cache: the keys' metric.
  CqQueryMoments queries(books.model.n_layer, books.model.n_kv_head, books.model.k_head_dim, width);
  const bool query_metric = o.key_metric == "query";
  // The squared attention every cached row receives, from position 0 on: the rows' weights.
  EvictionMetric attention(books.model.n_layer, books.model.n_kv_head);
  const bool attention_weights = o.row_weights == "attention";
  if (attention_weights) attention.start(0, 0);
  AttentionObservers observers{query_metric ? &queries : nullptr, attention_weights ? &attention : nullptr};
  if (!observers.empty()) session.set_observer(&observers);
  const bool output_metric = o.value_metric == "output";
  std::cerr << "calibrate: keys under " << (query_metric ? "the query metric" : "plain squared distance")
            << ", values under " << (output_metric ? "the output projection's metric" : "plain squared distance")
            << (query_metric || output_metric ? ", ridge " + std::to_string(o.ridge) : "")
            << (attention_weights ? ", rows weighted by their squared attention (floor " +
                                        std::to_string(o.attention_floor) + " x the mean)"
                                  : "")
            << "\n";

  const auto t_text = Clock::now();
  int64_t n = 0;
  if (o.text_file.empty()) {
    std::cerr << "calibrate: generating " << o.tokens << " tokens with the model (seed " << o.seed << ")\n";
    generate_calibration_text(session, o.tokens, o.seed,
                              [](const std::string& line) { std::cerr << "calibrate:   " << line << "\n"; });
    n = session.n_past();
  } else {
    std::cerr << "calibrate: evaluating " << o.text_file << "\n";
    n = evaluate_calibration_text(session, read_file(o.text_file), o.tokens);
  }
  session.set_observer(nullptr);
  const double text_seconds = since(t_text);
  std::cerr << "calibrate: " << n << " positions cached in " << std::fixed << std::setprecision(1) << text_seconds
            << " s; k-means on " << session.pool().size() << " threads\n";

  const auto t_learn = Clock::now();
  std::vector<CqLayerReport> reports;
  for (int layer = 0; layer < books.model.n_layer; ++layer) {
    const auto t_layer = Clock::now();
    const ModelConfig& mc = model->config();
    const std::vector<double> value_moments =
        output_metric ? cq_output_moments(model->file(), layer, mc.n_head, mc.n_kv_head, books.model.v_head_dim, width)
                      : std::vector<double>{};
    CqLearnOptions learn;
    learn.queries = query_metric ? &queries : nullptr;
    learn.ridge = o.ridge;
    learn.value_moments = value_moments;
    learn.attention = attention_weights ? &attention : nullptr;
    learn.attention_floor = o.attention_floor;
    // The cache keeps the first rows of every head in F16 and never reads their
    // codes; fitting them anyway measured no worse (docs/cq_accuracy.md).
    learn.first_row = o.skip_sink ? std::min<int64_t>(KvCq{}.sink, n - 1) : 0;
    reports.push_back(learn_cq_layer(session.cache(), n, layer, o.seed, o.iterations, session.pool(), books, learn));
    const CqLayerReport& r = reports.back();
    std::cerr << "calibrate:   k-means layer " << layer << " (" << (layer + 1) << "/" << books.model.n_layer << "): K "
              << std::setprecision(4) << r.k_fit << " (held out " << r.k_heldout << "), V " << r.v_fit << " (held out "
              << r.v_heldout << "); " << std::setprecision(1) << r.mean_iterations << " Lloyd steps per block, "
              << r.at_cap << " blocks at the cap; " << since(t_layer) << " s\n";
  }
  const double learn_seconds = since(t_learn);
  save_cq_codebooks(out, books);

  // Relative reconstruction error |x - decode(encode(x))| / |x|, mean over rows and kv heads.
  double k_fit = 0.0, k_held = 0.0, v_fit = 0.0, v_held = 0.0;
  const double n_layers = static_cast<double>(reports.size());
  std::cout << "relative reconstruction error, " << cq_spec_name(spec) << ": " << reports[0].n_fit << " rows fitted, "
            << reports[0].n_heldout << " held out (every " << kCqHoldoutEvery << "th position)\n";
  std::cout << "layer  K fitted  K held out  V fitted  V held out\n" << std::fixed << std::setprecision(4);
  for (const CqLayerReport& r : reports) {
    std::cout << std::setw(5) << r.layer << std::setw(10) << r.k_fit << std::setw(12) << r.k_heldout << std::setw(10)
              << r.v_fit << std::setw(12) << r.v_heldout << "\n";
    k_fit += r.k_fit / n_layers;
    k_held += r.k_heldout / n_layers;
    v_fit += r.v_fit / n_layers;
    v_held += r.v_heldout / n_layers;
  }
  std::cout << " mean" << std::setw(10) << k_fit << std::setw(12) << k_held << std::setw(10) << v_fit << std::setw(12)
            << v_held << "\n";
  std::cout << std::setprecision(1) << "wrote " << out << " (" << n << " positions; text " << text_seconds
            << " s, k-means " << learn_seconds << " s, total " << since(t0) << " s)\n";
}

struct CalibrateTealOpts {
  std::string model = default_model_path();
  std::string out, text_file;
  std::vector<double> levels = TealCalibrationOptions{}.levels;
  int64_t tokens = 2048;
  int64_t block_tokens = TealCalibrationOptions{}.block_tokens;
  double step = TealCalibrationOptions{}.step;
  uint64_t seed = 42;
  int threads = 0;
};

void calibrate_teal_command(const CalibrateTealOpts& o) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  if (!o.text_file.empty()) refuse_evaluation_text(o.text_file, "calibrate");
  if (o.threads < 0) fail("-t must not be negative, got ", o.threads);
  std::vector<double> levels = o.levels;
  std::sort(levels.begin(), levels.end());
  levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
  const std::string out = teal_sidecar_path(o.model, o.out);

  auto model = load_model(o.model);
  TealTables tables = make_teal_tables(model->file());
  std::vector<int32_t> tokens;
  {
    SessionOptions so;
    so.n_ctx = o.tokens;
    so.engine.n_threads = o.threads;
    Session session(*model, so);
    if (o.text_file.empty()) {
      std::cerr << "calibrate: generating " << o.tokens << " tokens with the model (seed " << o.seed << ")\n";
      tokens = generate_calibration_text(session, o.tokens, o.seed,
                                         [](const std::string& line) { std::cerr << "calibrate:   " << line << "\n"; });
    } else {
      std::cerr << "calibrate: reading " << o.text_file << "\n";
      evaluate_calibration_text(session, read_file(o.text_file), o.tokens);
      tokens = session.history();
    }
  }
  std::cerr << "calibrate: " << tokens.size() << " tokens of text in " << std::fixed << std::setprecision(1)
            << since(t0) << " s\n";
  TealCalibrationOptions co;
  co.levels = levels;
  co.block_tokens = o.block_tokens;
  co.step = o.step;
  co.n_threads = o.threads;
  const TealCalibrationReport r = calibrate_teal(*model, tokens, co, tables, [](const std::string& line) {
    std::cerr << "calibrate:   " << line << "\n";
  });
  save_teal_tables(out, tables);

  std::cout << "TEAL thresholds: " << r.positions << " positions fitted, " << r.heldout_positions
            << " held out (the last fifth of the text)\n";
  std::cout << "target  fitted  held out   q     k     v     o     gate  up    down  (mean per projection)\n";
  for (size_t k = 0; k < levels.size(); ++k) {
    std::cout << std::fixed << std::setprecision(3) << std::setw(6) << levels[k] << std::setw(8) << r.fitted_sparsity[k]
              << std::setw(10) << r.heldout_sparsity[k] << "  ";
    for (Projection p : kAllProjections) {
      double mean = 0.0;
      for (const TealLayerReport& lr : r.layers) mean += lr.sparsity[k][static_cast<size_t>(p)] / r.layers.size();
      std::cout << std::setprecision(2) << std::setw(6) << mean;
    }
    std::cout << "\n";
  }
  std::cout << std::setprecision(1) << "wrote " << out << " (" << since(t0) << " s)\n";
}

}  // namespace

struct CalibrateTextOpts {
  std::string model = default_model_path();
  std::string text_out, ids_out;
  int64_t tokens = 4096;
  uint64_t seed = 42;
  int threads = 0;
};

// The model's own generations (the text every calibration here uses by
// default), for offline tools: tools/flatquant/train.py reads the ids, and
// llama-imatrix can read the text.
void calibrate_text_command(const CalibrateTextOpts& o) {
  if (o.text_out.empty() && o.ids_out.empty()) fail("calibrate text: give -o FILE and/or --ids FILE");
  if (o.tokens < 16) fail("calibrate: --tokens must be at least 16, got ", o.tokens);
  if (o.threads < 0) fail("-t must not be negative, got ", o.threads);
  auto model = load_model(o.model);
  SessionOptions so;
  so.n_ctx = o.tokens;
  so.engine.n_threads = o.threads;
  Session session(*model, so);
  std::cerr << "calibrate: generating " << o.tokens << " tokens with the model (seed " << o.seed << ")\n";
  const std::vector<int32_t> tokens = generate_calibration_text(
      session, o.tokens, o.seed, [](const std::string& line) { std::cerr << "calibrate:   " << line << "\n"; });
  if (!o.text_out.empty()) write_file(o.text_out, model->tokenizer().decode(tokens));
  if (!o.ids_out.empty()) {
    std::string json = "[[";
    for (size_t i = 0; i < tokens.size(); ++i) json += (i ? "," : "") + std::to_string(tokens[i]);
    write_file(o.ids_out, json + "]]\n");
  }
  std::cout << "wrote " << tokens.size() << " tokens" << (o.text_out.empty() ? "" : " to " + o.text_out)
            << (o.ids_out.empty() ? "" : " (ids: " + o.ids_out + ")") << "\n";
}

struct CalibrateVocabOpts {
  std::string model = default_model_path();
  std::vector<std::string> corpus;
  std::string out;
  int64_t max_mib = 512;
};

void calibrate_vocab_command(const CalibrateVocabOpts& o) {
  if (o.corpus.empty()) fail("calibrate draft-vocab: name the corpus with -f (files or directories)");
  for (const std::string& p : o.corpus) refuse_evaluation_text(p, "calibrate draft-vocab");
  if (o.max_mib < 1) fail("calibrate draft-vocab: --max-mib must be at least 1, got ", o.max_mib);
  const std::string out = o.out.empty() ? gguf::default_sidecar_path(o.model, "draft-vocab") : o.out;
  const auto t0 = std::chrono::steady_clock::now();
  auto model = load_model(o.model);
  const Tokenizer& tok = model->tokenizer();
  const CorpusCount c =
      count_corpus_tokens(tok, o.corpus, o.max_mib << 20, [](const std::string& line) { std::cerr << line << "\n"; });
  const TokenRanking r = rank_tokens(tok, c.counts);
  save_token_ranking(out, r);
  std::cout << "counted " << r.corpus_tokens << " tokens in " << c.files << " files (" << c.bytes / (1 << 20)
            << " MiB; " << c.skipped << " binary files left out) in " << std::fixed << std::setprecision(1)
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s: " << r.ids.size()
            << " of " << tok.n_vocab() << " tokens used\n";
  std::cout << "share of the corpus's tokens the most frequent N cover:\n";
  for (size_t n : {1024, 4096, 8192, 16384, 32768, 65536}) {
    uint64_t covered = 0;
    for (size_t i = 0; i < std::min(n, r.counts.size()); ++i) covered += static_cast<uint64_t>(r.counts[i]);
    std::cout << "  N = " << std::setw(6) << n << ": " << std::setprecision(2)
              << 100.0 * static_cast<double>(covered) / static_cast<double>(r.corpus_tokens) << " %\n";
  }
  std::cout << "wrote " << out << "\n";
}
void add_calibrate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("calibrate", "learn data a technique needs from a model's own activations");
  cmd->require_subcommand(1);
  auto o = std::make_shared<CalibrateKvOpts>();
  auto* kv = cmd->add_subcommand("kv", "learn CQ codebooks of the KV cache and write them next to the model");
  kv->add_option("-m,--model", o->model, "GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from the cache)");
  kv->add_option("--cq", o->cq, "cq2 (4 channels in 8 bits: 2 bits per channel) or cq1 (8 channels in 8 bits)");
  kv->add_option("-o,--output", o->out,
                 "sidecar to write (default: MODEL.cq2.gguf / MODEL.cq1.gguf next to the model)");
  kv->add_option("--tokens", o->tokens, "positions to calibrate on (default 2048)");
  kv->add_option("-f,--file", o->text_file,
                 "calibrate on this text instead of the model's own (not WikiText-2's test)");
  kv->add_option("-s,--seed", o->seed, "seed of the generation and of k-means++ (default 42)");
  kv->add_option("-t,--threads", o->threads, "threads (default: one per core)");
  kv->add_option("--iterations", o->iterations, "Lloyd steps at most per codebook (default 25)");
  kv->add_option("--key-metric", o->key_metric,
                 "query (default: keys coded for the error in q.k, from the queries' second moments) or mse "
                 "(plain squared distance: a little less accurate, one F16 codebook per head fewer held; "
                 "docs/cq_accuracy.md)");
  kv->add_option("--value-metric", o->value_metric,
                 "mse (default) or output (values coded for the error after the output projection)");
  kv->add_option("--exact-layers", o->exact_layers,
                 "the first N layers keep their keys and values in F16 under the CQ cache types (default 0)");
  kv->add_option("--stages", o->stages,
                 "residual stages: S codes per block of S x c channels, each coding what the earlier ones left "
                 "(same bytes per row, S times the codebook; default 1; docs/cq_accuracy.md)");
  kv->add_option("--ridge", o->ridge, "query/output metric: identity added to the normalized moments (default 1.0)");
  kv->add_option("--row-weights", o->row_weights,
                 "uniform (default) or attention (rows weighted in k-means by the squared attention they received "
                 "during calibration: docs/cq_accuracy.md)");
  kv->add_option("--attention-floor", o->attention_floor,
                 "--row-weights attention: every row's weight gains this many times the mean weight (default 1)");
  kv->add_flag("--skip-sink", o->skip_sink,
               "leave the first 16 rows (kept in F16 by the cache, never read from codes) out of k-means "
               "(docs/cq_accuracy.md: no better on SmolLM2)");
  kv->callback([o] { calibrate_kv(*o); });

  auto t = std::make_shared<CalibrateTealOpts>();
  auto* teal = cmd->add_subcommand("teal", "learn TEAL's activation thresholds and write them next to the model");
  teal->add_option("-m,--model", t->model, "GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from the cache)");
  teal->add_option("--sparsity", t->levels,
                   "model-wide sparsities to calibrate, comma-separated (default 0.1,0.2,0.25,0.3,0.4,0.5,0.6,0.7)")
      ->delimiter(',');
  teal->add_option("-o,--output", t->out, "sidecar to write (default: MODEL.teal.gguf next to the model)");
  teal->add_option("--tokens", t->tokens, "tokens of text (default 2048; the last fifth is held out)");
  teal->add_option("--block-tokens", t->block_tokens,
                   "positions the greedy allocation measures block errors on (default 512)");
  teal->add_option("--step", t->step, "block sparsity added per greedy step (default 0.025)");
  teal->add_option("-f,--file", t->text_file,
                   "calibrate on this text instead of the model's own (not WikiText-2's test)");
  teal->add_option("-s,--seed", t->seed, "seed of the generation (default 42)");
  teal->add_option("-t,--threads", t->threads, "threads (default: one per core)");
  teal->callback([t] { calibrate_teal_command(*t); });

  auto x = std::make_shared<CalibrateTextOpts>();
  auto* text = cmd->add_subcommand("text", "write the model's own generations (the default calibration text)");
  text->add_option("-m,--model", x->model, "GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from the cache)");
  text->add_option("-o,--output", x->text_out, "the text");
  text->add_option("--ids", x->ids_out, "the token ids, as a JSON list of lists (tools/flatquant/train.py reads it)");
  text->add_option("--tokens", x->tokens, "tokens to generate (default 4096)");
  text->add_option("-s,--seed", x->seed, "seed of the generation (default 42)");
  text->add_option("-t,--threads", x->threads, "threads (default: one per core)");
  text->callback([x] { calibrate_text_command(*x); });

  auto v = std::make_shared<CalibrateVocabOpts>();
  auto* vocab = cmd->add_subcommand(
      "draft-vocab", "rank a vocabulary's tokens by their frequency in a corpus (--spec-draft-vocab reads it)");
  vocab->add_option("-m,--model", v->model, "GGUF model file whose tokenizer counts (a draft or its target)");
  vocab
      ->add_option("-f,--file", v->corpus, "corpus files or directories (every file under them), not WikiText-2's test")
      ->expected(1, -1);
  vocab->add_option("-o,--output", v->out, "sidecar to write (default: MODEL.draft-vocab.gguf next to the model)");
  vocab->add_option("--max-mib", v->max_mib, "stop counting after this much text (default 512)");
  vocab->callback([v] { calibrate_vocab_command(*v); });
}

}  // namespace kestrel::cli
