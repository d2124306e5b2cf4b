#include "runtime/long_ppl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/printf.h"
#include "runtime/kv_compressor.h"
#include "runtime/longeval.h"
#include "runtime/perplexity_math.h"
#include "runtime/session.h"
#include "switches/registry.h"

namespace kestrel {
namespace {

bool is_article_heading(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  // " = Title =": one '=' on each side; " = = Section = =" is inside an article.
  return line.size() >= 5 && line.substr(0, 3) == " = " && line[3] != '=' && line.back() == '=' &&
         line[line.size() - 2] == ' ' && line[line.size() - 3] != '=';
}

// The budget a document of n tokens runs with: kv_budget as given, else
// 1/rate of the document (see the header); 0 when KV-Compress is off.
KvCompressConfig per_document(const KvCompressConfig& c, int64_t n) {
  const KvCompressSpec spec = kv_compress_spec(c);
  if (!spec.on() || c.budget > 0) return {c.mode, 0, c.budget};
  return {c.mode, 0, static_cast<int64_t>(std::ceil(static_cast<double>(n) / spec.rate))};
}

}  // namespace

std::vector<std::string> wikitext_articles(std::string_view text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    end = end == std::string_view::npos ? text.size() : end + 1;
    const std::string_view line = text.substr(at, end - at);
    std::string_view bare = line;
    while (!bare.empty() && (bare.back() == '\n' || bare.back() == '\r')) bare.remove_suffix(1);
    if (is_article_heading(bare) || out.empty()) out.emplace_back();
    out.back().append(line);
    at = end;
  }
  // A preamble before the first heading that is only blank lines is no article.
  if (!out.empty() && out.front().find_first_not_of(" \r\n") == std::string::npos) out.erase(out.begin());
  return out;
}

std::vector<std::vector<int32_t>> join_documents(const Tokenizer& tok, std::span<const std::string> articles,
                                                 int64_t min_tokens, int64_t max_tokens, int max_docs) {
  if (min_tokens < 2 || max_tokens < min_tokens)
    fail("longeval --ppl: documents of ", min_tokens, " to ", max_tokens, " tokens: need 2 <= min <= max");
  std::vector<std::vector<int32_t>> docs;
  std::string text;
  for (size_t i = 0; i < articles.size() && (max_docs <= 0 || static_cast<int>(docs.size()) < max_docs); ++i) {
    text += articles[i];
    std::vector<int32_t> t = tok.encode(text, true, false);
    if (static_cast<int64_t>(t.size()) < min_tokens) continue;
    t.resize(static_cast<size_t>(std::min<int64_t>(max_tokens, static_cast<int64_t>(t.size()))));
    docs.push_back(std::move(t));
    text.clear();
  }
  return docs;
}

LongPplResult run_long_ppl(const Model& model, const std::vector<std::vector<int32_t>>& docs, const LongPplOptions& o,
                           const LongPplProgressFn& progress) {
  using Clock = std::chrono::steady_clock;
  if (docs.empty()) fail("longeval --ppl: no document (the text is shorter than one document)");
  if (o.chunk < 2) fail("longeval --ppl: chunks must hold at least 2 tokens, got ", o.chunk);
  const int64_t train = model.config().n_ctx_train;
  const int64_t n_vocab = model.config().n_vocab;
  const auto t0 = Clock::now();
  LongPplResult r;
  for (size_t d = 0; d < docs.size(); ++d) {
    const std::vector<int32_t>& tokens = docs[d];
    const auto n = static_cast<int64_t>(tokens.size());
    if (train > 0 && n > train)
      fail("longeval --ppl: a document of ", n, " tokens is longer than the model's trained context of ", train);
    if (n <= o.chunk) fail("longeval --ppl: a document of ", n, " tokens is not longer than one chunk of ", o.chunk);
    SessionOptions so;
    so.n_ctx = n;
    so.n_batch = o.n_batch;
    so.engine = o.engine;
    so.engine.kv_compress = per_document(o.engine.kv_compress, n);
    Session session(model, so);
    r.engine = session.config();
    r.engine.kv_compress = o.engine.kv_compress;  // reported as asked; each document's budget is in its row
    LongPplDoc doc;
    doc.tokens = n;
    doc.budget = so.engine.kv_compress.budget;
    for (int64_t start = 0; start < n; start += o.chunk) {
      const int64_t len = std::min<int64_t>(o.chunk, n - start);
      const auto chunk = std::span<const int32_t>(tokens).subspan(static_cast<size_t>(start), static_cast<size_t>(len));
      const std::vector<float>& logits = session.append_all_logits(chunk);
      // Row i (position start + i) predicts the token after it; tokens from
      // the end of the first chunk on are scored.
      for (int64_t i = 0; i < len; ++i) {
        const int64_t target = start + i + 1;
        if (target < o.chunk || target >= n) continue;
        const std::span<const float> row(logits.data() + i * n_vocab, static_cast<size_t>(n_vocab));
        const double nll = row_nll(row_softmax(row), row, tokens[static_cast<size_t>(target)]);
        doc.nll_sum += nll;
        r.nll2_sum += nll * nll;
        ++doc.scored;
      }
      doc.kv_held_max = std::max(doc.kv_held_max, measure_kv_bytes(session.cache()).held);
    }
    const KvCache& cache = session.cache();
    doc.kv_held_full = (n + KvCache::kBlock - 1) / KvCache::kBlock * cache.heads_per_position_block() *
                           static_cast<int64_t>(cache.block_bytes()) +
                       static_cast<int64_t>(cache.codebook_bytes());
    doc.evicted_blocks = session.evicted_blocks();
    r.scored += doc.scored;
    r.nll_sum += doc.nll_sum;
    r.docs.push_back(doc);
    if (progress)
      progress(static_cast<int>(d) + 1, static_cast<int>(docs.size()), doc,
               std::chrono::duration<double>(Clock::now() - t0).count());
  }
  const PplEstimate e = ppl_estimate(r.nll_sum, r.nll2_sum, r.scored);
  r.ppl = e.ppl;
  r.ppl_error = e.error;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

namespace {

const auto fmt = printf_string;

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

std::string format_long_ppl_markdown(const LongPplResult& r, const std::string& model_name) {
  std::ostringstream os;
  os << "model: " << model_name << ", engine: " << engine_settings_text(r.engine) << ", " << r.docs.size()
     << " documents, " << r.scored << " tokens scored\n\n";
  os << "| doc | tokens | scored | kv budget | PPL | KV held max MiB | of the full cache | evicted blocks |\n";
  os << "|----:|------:|------:|------:|------:|------:|------:|------:|\n";
  for (size_t i = 0; i < r.docs.size(); ++i) {
    const LongPplDoc& d = r.docs[i];
    os << "| " << i + 1 << " | " << d.tokens << " | " << d.scored << " | "
       << (d.budget > 0 ? std::to_string(d.budget) : std::string("-")) << " | "
       << fmt("%.4f", std::exp(d.nll_sum / static_cast<double>(d.scored))) << " | " << fmt("%.2f", mib(d.kv_held_max))
       << " | " << fmt("%.3f", d.kv_held_full > 0 ? static_cast<double>(d.kv_held_max) / d.kv_held_full : 0.0) << " | "
       << d.evicted_blocks << " |\n";
  }
  os << "\nPPL over all scored tokens: " << fmt("%.4f", r.ppl) << " +/- " << fmt("%.4f", r.ppl_error) << " ("
     << fmt("%.1f", r.seconds) << " s)\n";
  os << "\nKV held: cache blocks in use after a chunk's eviction x bytes per block (the next chunk's tokens are "
        "stored before it is evicted again).\n";
  return os.str();
}

std::string format_long_ppl_json(const LongPplResult& r, const std::string& model_name) {
  using Json = nlohmann::ordered_json;
  Json j;
  j["model"] = model_name;
  Json sw = Json::object();
  for (const auto& s : engine_settings(r.engine)) sw[s.name] = s.value;
  j["switches"] = sw;
  j["ppl"] = r.ppl;
  j["ppl_error"] = r.ppl_error;
  j["scored"] = r.scored;
  j["seconds"] = r.seconds;
  Json docs = Json::array();
  for (const auto& d : r.docs)
    docs.push_back({{"tokens", d.tokens},
                    {"scored", d.scored},
                    {"kv_budget", d.budget},
                    {"ppl", std::exp(d.nll_sum / static_cast<double>(d.scored))},
                    {"kv_bytes_held_max", d.kv_held_max},
                    {"kv_bytes_full", d.kv_held_full},
                    {"evicted_blocks", d.evicted_blocks}});
  j["documents"] = docs;
  return j.dump(2) + "\n";
}

}  // namespace kestrel
