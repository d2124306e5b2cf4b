// CQ calibration from the model's own KV cache (runtime/cq_calibration.h).
#include "runtime/cq_calibration.h"

#include <algorithm>
#include <array>

#include "core/error.h"
#include "core/fp16.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "kv/cq_kmeans.h"
#include "tokenizer/chat_template.h"

namespace kestrel {
namespace {

// Different registers of text give the keys and values of different heads
// something to do: narrative prose, source code, a chat turn, a list, figures.
constexpr std::array<CqCalibrationPrompt, 6> kPrompts = {{
    {"The lighthouse keeper had not spoken to anyone in eleven days when the storm finally broke. He climbed the "
     "spiral stairs at dawn, counting the steps as he always did, and found",
     false},
    {"// A small C++ program that reads a CSV file of city temperatures and prints the monthly averages.\n"
     "#include <fstream>\n#include <iostream>\n#include <map>\n#include <sstream>\n#include <string>\n\nint main(int "
     "argc, char** argv) {\n",
     false},
    {"I am planning a three-day trip to Lisbon in March with my parents, who do not like long walks. Can you suggest "
     "a plan for each day, with places to eat?",
     true},
    {"Checklist for moving to a new apartment:\n1. ", false},
    {"Quarterly report, fiscal year 2023. Revenue by region (in millions of euros): North 12.4, South 9.8, East "
     "7.1, West 15.6. Compared with the previous quarter,",
     false},
    {"Explain, step by step, how a hash table handles collisions, and compare open addressing with chaining.", true},
}};

std::string prompt_text(const Tokenizer& tok, const CqCalibrationPrompt& p) {
  if (!p.chat) return std::string(p.text);
  try {
    return apply_chat_template(tok.spec().chat_template, {{"user", std::string(p.text)}}, true);
  } catch (const Error&) {
    // A template family we do not render: the message as plain text.
    return "User: " + std::string(p.text) + "\nAssistant:";
  }
}

}  // namespace

std::span<const CqCalibrationPrompt> cq_calibration_prompts() { return kPrompts; }

std::vector<int32_t> generate_calibration_text(Session& session, int64_t n_tokens, uint64_t seed,
                                               const CqProgressFn& progress) {
  if (n_tokens < 1 || n_tokens > session.n_ctx())
    fail("calibration: ", n_tokens, " tokens do not fit the context of ", session.n_ctx());
  const Tokenizer& tok = session.model().tokenizer();
  const auto prompts = cq_calibration_prompts();
  const auto n_prompts = static_cast<int64_t>(prompts.size());
  session.clear();
  std::vector<int32_t> history;
  // Each prompt brings the total to its share of n_tokens; a turn that ends
  // early (end of generation) leaves more for the next. Four rounds of the
  // prompts at most, in case the model keeps stopping at once.
  for (int64_t i = 0; static_cast<int64_t>(history.size()) < n_tokens && i < 4 * n_prompts; ++i) {
    const CqCalibrationPrompt& p = prompts[static_cast<size_t>(i % n_prompts)];
    const std::string text = (i > 0 ? "\n\n" : "") + prompt_text(tok, p);
    const std::vector<int32_t> ids = tok.encode(text, i == 0, p.chat);
    history.insert(history.end(), ids.begin(), ids.end());
    const int64_t goal = std::min(n_tokens, std::max((i + 1) * n_tokens / n_prompts, int64_t(history.size()) + 16));
    if (static_cast<int64_t>(history.size()) >= goal) {
      history.resize(static_cast<size_t>(std::min<int64_t>(n_tokens, history.size())));
      session.set_history(history);
      continue;
    }
    GenerateOptions g;
    g.max_tokens = static_cast<int>(goal - static_cast<int64_t>(history.size()));
    g.sampling.seed = mix_seed(seed, static_cast<uint64_t>(i));
    const GenerateResult r = generate(session, history, g);
    history = session.history();
    if (progress)
      progress("generated " + std::to_string(r.tokens.size()) + " tokens after prompt " +
               std::to_string(i % n_prompts + 1) + " (" + r.finish_reason + "), " + std::to_string(history.size()) +
               "/" + std::to_string(n_tokens) + " positions");
  }
  return history;
}

int64_t evaluate_calibration_text(Session& session, std::string_view text, int64_t n_tokens) {
  std::vector<int32_t> ids = session.model().tokenizer().encode(text, true, false);
  if (static_cast<int64_t>(ids.size()) > n_tokens) ids.resize(static_cast<size_t>(n_tokens));
  if (ids.empty()) fail("calibration: the text has no tokens");
  if (static_cast<int64_t>(ids.size()) > session.n_ctx())
    fail("calibration: ", ids.size(), " tokens do not fit the context of ", session.n_ctx());
  session.clear();
  session.set_history(ids);
  return static_cast<int64_t>(ids.size());
}

std::vector<float> cached_kv_rows(const KvCache& cache, int layer, int head, bool keys, int64_t n) {
  const KvHeadView h = cache.view(layer, 0, head);
  const DType type = keys ? h.k_type : h.v_type;
  if (type != DType::F16)
    fail("calibration reads an F16 KV cache, this one stores ", keys ? "keys" : "values", " as ", dtype_name(type));
  if (n > cache.seq_len(0)) fail("calibration: ", n, " rows asked, the cache holds ", cache.seq_len(0));
  // Row p is at p only while no block was evicted (KV-Compress).
  if (h.evicted != 0)
    fail("calibration reads every position; layer ", layer, " head ", head, " has ", h.evicted, " evicted rows");
  const int d = cache.shape().head_dim;
  const auto* base = static_cast<const uint8_t*>(keys ? h.k : h.v);
  const int64_t stride = keys ? h.block_stride : h.v_block_stride;
  const size_t row_bytes = keys ? cache.k_row_bytes() : cache.v_row_bytes();
  std::vector<float> rows(static_cast<size_t>(n) * d);
  for (int64_t p = 0; p < n; ++p) {
    const auto* src = reinterpret_cast<const uint16_t*>(base + h.blocks[p / KvCache::kBlock] * stride +
                                                        (p % KvCache::kBlock) * static_cast<int64_t>(row_bytes));
    for (int c = 0; c < d; ++c) rows[static_cast<size_t>(p) * d + c] = fp16_to_f32(src[c]);
  }
  return rows;
}

std::vector<double> cq_output_moments(const gguf::File& model, int layer, int n_head, int n_kv_head, int head_dim,
                                      int c) {
  const std::string name = "blk." + std::to_string(layer) + ".attn_output.weight";
  const gguf::TensorInfo* t = model.find_tensor(name);
  const int64_t in = int64_t{n_head} * head_dim;
  if (!t || t->ne.size() != 2 || t->ne[0] != in) fail("calibration: no ", name, " of ", in, " inputs per row");
  const int groups = head_dim / c, per_kv = n_head / n_kv_head;
  const size_t per_group = static_cast<size_t>(c) * c;
  std::vector<double> moments(static_cast<size_t>(n_kv_head) * groups * per_group, 0.0);
  const auto& dequantize = kernels::quant_kernels(t->type, Isa::Scalar).dequantize_row;
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t r = 0; r < t->ne[1]; ++r) {
    dequantize(t->data + static_cast<size_t>(r) * row_bytes(t->type, in), row.data(), in);
    for (int h = 0; h < n_head; ++h)
      for (int g = 0; g < groups; ++g)
        cq_add_outer(moments.data() + (static_cast<size_t>(h / per_kv) * groups + g) * per_group,
                     row.data() + int64_t{h} * head_dim + g * c, c);
  }
  return moments;
}

CqLayerReport learn_cq_layer(const KvCache& cache, int64_t n, int layer, uint64_t seed, int max_iterations,
                             ThreadPool& pool, CqCodebooks& books, const CqLearnOptions& options) {
  const CqQueryMoments* queries = options.queries;
  const std::span<const double> value_moments = options.value_moments;
  const KvShape& s = cache.shape();
  const CqModelInfo& m = books.model;
  if (m.n_kv_head != s.n_kv_head || m.k_head_dim != s.head_dim || m.v_head_dim != s.head_dim || layer >= m.n_layer ||
      m.n_layer != s.n_layer)
    fail("calibration: the codebooks are for ", m.n_layer, " layers x ", m.n_kv_head, " kv heads of ", m.k_head_dim,
         "/", m.v_head_dim, " channels, the cache holds ", s.n_layer, " x ", s.n_kv_head, " x ", s.head_dim);
  const int n_heads = s.n_kv_head, d = s.head_dim;
  if (options.first_row < 0 || options.first_row >= n)
    fail("calibration: rows from ", options.first_row, " on of ", n, " leave none to fit");
  if (options.attention && !(options.attention_floor >= 0.0))
    fail("calibration: the attention weights' floor must not be negative, got ", options.attention_floor);
  // [head][K, V]: rows [n][head_dim], split into the rows k-means sees and the
  // held-out ones; with attention weights, [head] the fitted rows' weights (K
  // and V share them: a row's probability scales both errors).
  std::vector<std::vector<float>> fit(static_cast<size_t>(2 * n_heads)), heldout(fit.size());
  std::vector<std::vector<float>> weights(options.attention ? static_cast<size_t>(n_heads) : 0);
  for (int hk = 0; hk < 2 * n_heads; ++hk) {
    const std::vector<float> rows = cached_kv_rows(cache, layer, hk / 2, hk % 2 == 0, n);
    for (int64_t p = options.first_row; p < n; ++p) {
      const bool held = p % kCqHoldoutEvery == kCqHoldoutEvery - 1;
      auto& to = held ? heldout[hk] : fit[hk];
      to.insert(to.end(), rows.begin() + p * d, rows.begin() + (p + 1) * d);
      if (!held && hk % 2 == 0 && options.attention) weights[hk / 2].push_back(options.attention->at(layer, hk / 2, p));
    }
  }
  for (std::vector<float>& w : weights) {
    double mean = 0.0;
    for (float x : w) mean += x;
    mean /= static_cast<double>(w.size());
    if (!(mean > 0.0)) fail("calibration: no attention was observed on layer ", layer, "'s rows");
    for (float& x : w) x += static_cast<float>(options.attention_floor * mean);
  }
  auto book_of = [&](int hk) -> CqCodebook& {
    const size_t i = books.index(layer, hk / 2);
    return hk % 2 == 0 ? books.k[i] : books.v[i];
  };

  // The whitening of each (head, K or V)'s blocks, [head][K, V][block][w][w]
  // (empty when neither has a metric; w = c stages, a block per group without
  // stages): K's from the queries' moments, V's from the output projection's.
  const int w = book_of(0).width(), n_blocks = book_of(0).blocks();
  const size_t per_block = static_cast<size_t>(w) * w;
  if (queries && queries->channels_per_group() != w)
    fail("calibration: query moments of groups of ", queries->channels_per_group(), " channels for blocks of ", w);
  if (!value_moments.empty() && value_moments.size() != static_cast<size_t>(n_heads) * n_blocks * per_block)
    fail("calibration: ", value_moments.size(), " value moments for ", n_heads, " heads x ", n_blocks, " blocks");
  std::vector<float> whitening;
  if (queries || !value_moments.empty())
    whitening.assign(static_cast<size_t>(2 * n_heads) * n_blocks * per_block, 0.0f);
  auto whitening_of = [&](int hk, int b) -> float* {
    const bool keys = hk % 2 == 0;
    if (keys ? !queries : value_moments.empty()) return nullptr;
    return whitening.data() + (static_cast<size_t>(hk) * n_blocks + b) * per_block;
  };
  for (int hk = 0; hk < 2 * n_heads; ++hk) {
    const int h = hk / 2;
    if (!whitening_of(hk, 0)) continue;
    if (hk % 2 == 0 && queries->queries(layer, h) == 0)
      fail("calibration: no query of layer ", layer, " head ", h, " was observed");
    enable_cq_whitening(book_of(hk));
    for (int b = 0; b < n_blocks; ++b) {
      const std::span<const double> moment =
          hk % 2 == 0 ? queries->moment(layer, h, b)
                      : value_moments.subspan((static_cast<size_t>(h) * n_blocks + b) * per_block, per_block);
      const std::vector<float> wb = cq_whitening_from_moment(moment, w, options.ridge);
      std::copy(wb.begin(), wb.end(), whitening_of(hk, b));
    }
  }

  // One task per (head, K or V, block): a block's stages are learnt in turn.
  const int64_t n_tasks = int64_t{2} * n_heads * n_blocks;
  std::vector<int> iterations(static_cast<size_t>(n_tasks));
  const uint64_t layer_seed = mix_seed(seed, static_cast<uint64_t>(layer));
  pool.parallel_for_dynamic(n_tasks, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      const int hk = static_cast<int>(t / n_blocks), b = static_cast<int>(t % n_blocks);
      iterations[t] = learn_cq_block(book_of(hk), b, fit[hk], mix_seed(mix_seed(layer_seed, hk), b), max_iterations,
                                     whitening_of(hk, b),
                                     weights.empty() ? std::span<const float>{} : weights[static_cast<size_t>(hk / 2)]);
    }
  });

  // Mean relative error of the rows of one set, per (head, K or V).
  auto mean_error = [&](const std::vector<std::vector<float>>& set) {
    std::vector<double> errors(set.size());
    pool.parallel_for_dynamic(static_cast<int64_t>(set.size()), 1, [&](int64_t begin, int64_t end, int) {
      for (int64_t hk = begin; hk < end; ++hk) {
        const std::span<const float> rows(set[hk]);
        const size_t n_rows = rows.size() / static_cast<size_t>(d);
        double sum = 0.0;
        for (size_t r = 0; r < n_rows; ++r)
          sum += cq_relative_error(book_of(static_cast<int>(hk)), rows.subspan(r * d, d));
        errors[hk] = n_rows > 0 ? sum / static_cast<double>(n_rows) : 0.0;
      }
    });
    return errors;
  };
  const std::vector<double> fit_errors = mean_error(fit), heldout_errors = mean_error(heldout);

  CqLayerReport report;
  report.layer = layer;
  report.n_fit = static_cast<int64_t>(fit[0].size()) / d;
  report.n_heldout = static_cast<int64_t>(heldout[0].size()) / d;
  for (int hk = 0; hk < 2 * n_heads; ++hk) {
    (hk % 2 == 0 ? report.k_fit : report.v_fit) += fit_errors[hk] / n_heads;
    (hk % 2 == 0 ? report.k_heldout : report.v_heldout) += heldout_errors[hk] / n_heads;
  }
  for (int it : iterations) {
    report.mean_iterations += static_cast<double>(it) / static_cast<double>(n_tasks);
    if (it >= max_iterations) ++report.at_cap;
  }
  return report;
}

}  // namespace kestrel
