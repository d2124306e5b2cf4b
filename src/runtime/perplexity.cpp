#include "runtime/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "runtime/kv_compressor.h"
#include "runtime/perplexity_math.h"
#include "switches/registry.h"

namespace kestrel {
namespace {

// Evaluates one chunk at a time from an empty cache and keeps only the logits
// perplexity uses, so the vocabulary projection of the first half is skipped
// (llama-perplexity asks for those rows only, too). The rows are handed over
// batch by batch and not kept: a 16k chunk of a 152k vocabulary would be 10 GB
// of logits (llama-perplexity holds them all), one batch of 512 is 300 MB.
class ChunkEvaluator {
 public:
  ChunkEvaluator(const Model& model, const PerplexityOptions& o, const PerplexityPlan& plan)
      : model_(model),
        plan_(plan),
        n_batch_(std::min(checked_batch(o.n_batch), plan.n_ctx)),
        core_(model, without_eviction(o.engine), model.kv_shape(plan.n_ctx, 1)) {}

  ThreadPool& pool() { return core_.pool(); }
  const EngineConfig& config() const { return core_.config(); }

  // chunk: [n_ctx] tokens as evaluated. Calls on_rows(i0, logits) per batch
  // with the logits [n, n_vocab] at positions first + i0 .. first + i0 + n - 1
  // (the scored positions are first .. n_ctx-2).
  template <class OnRows>
  void eval(std::span<const int32_t> chunk, OnRows on_rows) {
    const int64_t n_vocab = model_.config().n_vocab;
    const int last_wanted = plan_.n_ctx - 2;
    logits_.resize(static_cast<size_t>(std::min(n_batch_, plan_.n_scored_per_chunk())) * n_vocab);
    core_.cache().clear();
    int rows = 0;
    for (int start = 0; start < plan_.n_ctx; start += n_batch_) {
      const int n = std::min(n_batch_, plan_.n_ctx - start);
      batch_.clear();
      for (int i = 0; i < n; ++i) {
        const int pos = start + i;
        batch_.add(chunk[pos], pos, 0, pos >= plan_.first && pos <= last_wanted);
      }
      core_.forward(batch_, logits_.data());
      const int got = static_cast<int>(batch_.n_logits());
      if (got > 0) on_rows(rows, std::span<const float>(logits_.data(), static_cast<size_t>(got) * n_vocab));
      rows += got;
    }
  }

 private:
  // KV-Compress evicts once a prompt is cached; a chunk is scored in one
  // forward pass from an empty cache, so eviction could not change one logit
  // here. Refused rather than run: a PPL "unchanged" by kvcompress would read
  // as "no loss".
  // TEAL thins decode steps only; every token here is scored as if TEAL had
  // decoded it (teal.all_rows), as the paper measures its perplexity.
  static EngineConfig without_eviction(EngineConfig c) {
    c.teal.all_rows = true;
    if (kv_compress_spec(c.kv_compress).on())
      fail("perplexity: KV-Compress (kvcompress=", find_switch("kvcompress").current(c),
           ", kv_budget=", find_switch("kv_budget").current(c),
           ") does not apply here: each chunk is scored in one forward pass from an empty cache, before anything "
           "could be evicted. Long-document perplexity with eviction between chunks: kestrel longeval --ppl");
    return c;
  }
  static int checked_batch(int n_batch) {
    if (n_batch <= 0) fail("perplexity: batch size must be positive, got ", n_batch);
    return n_batch;
  }

  const Model& model_;
  PerplexityPlan plan_;
  int n_batch_;
  EngineCore core_;
  Batch batch_;
  std::vector<float> logits_;
};

void check_baseline(const LogitsRecord& base, const Model& model, const PerplexityPlan& plan,
                    std::span<const int32_t> tokens) {
  if (base.n_vocab() != model.config().n_vocab)
    fail("kl divergence: the baseline has a vocabulary of ", base.n_vocab(), " tokens, the model ",
         model.config().n_vocab);
  if (base.n_ctx() != plan.n_ctx)
    fail("kl divergence: the baseline was computed with n_ctx ", base.n_ctx(), ", this run uses ", plan.n_ctx);
  if (base.n_chunks() < plan.n_chunks)
    fail("kl divergence: the baseline holds ", base.n_chunks(), " chunks, this run needs ", plan.n_chunks);
  const size_t n = static_cast<size_t>(plan.n_chunks) * plan.n_ctx;
  if (!std::equal(tokens.begin(), tokens.begin() + n, base.tokens().begin()))
    fail("kl divergence: the baseline was computed on different tokens");
}

double elapsed(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

PerplexityPlan plan_perplexity(size_t n_tokens, int n_ctx, int n_chunks_requested) {
  if (n_ctx < 4) fail("perplexity: the context must hold at least 4 tokens, got ", n_ctx);
  if (n_tokens < static_cast<size_t>(n_ctx))
    fail("perplexity: need at least ", n_ctx, " tokens for a context of ", n_ctx, ", the input has ", n_tokens);
  PerplexityPlan p;
  p.n_ctx = n_ctx;
  p.first = n_ctx / 2;
  const size_t most = n_tokens / static_cast<size_t>(n_ctx);
  p.n_chunks = static_cast<int>(n_chunks_requested < 0 ? most : std::min<size_t>(most, n_chunks_requested));
  if (p.n_chunks == 0) fail("perplexity: zero chunks requested");
  return p;
}

std::vector<int32_t> tokenize_for_perplexity(const Tokenizer& tok, std::string_view text) {
  if (tok.spec().add_eos)
    fail("perplexity: the vocabulary appends EOS to every text, which the chunking rule excludes");
  return tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
}

PerplexityResult run_perplexity(const Model& model, std::span<const int32_t> tokens, const PerplexityOptions& o,
                                LogitsRecord* record_to, const LogitsRecord* compare_with,
                                const PerplexityProgressFn& progress) {
  const int n_ctx = o.n_ctx > 0 ? o.n_ctx : static_cast<int>(std::min<int64_t>(model.config().n_ctx_train, 1 << 30));
  const PerplexityPlan plan = plan_perplexity(tokens.size(), n_ctx, o.n_chunks);
  if (compare_with) check_baseline(*compare_with, model, plan, tokens);
  if (record_to) {
    const int k = record_to->top_k() > 0 ? record_to->top_k() : kLogProbTopK;
    *record_to = LogitsRecord(model.config().n_vocab, plan.n_ctx, k);
  }
  const Tokenizer& tok = model.tokenizer();
  const bool add_bos = tok.spec().add_bos && tok.bos() >= 0;
  const int64_t n_vocab = model.config().n_vocab;
  const int n_scored = plan.n_scored_per_chunk();

  ChunkEvaluator evaluator(model, o, plan);
  PerplexityResult r;
  r.plan = plan;
  r.engine = evaluator.config();
  KlStats kl_stats;
  std::vector<double> nll(n_scored);
  std::vector<KlToken> kl_tokens(compare_with ? n_scored : 0);
  std::vector<int32_t> chunk(plan.n_ctx);
  const auto t0 = std::chrono::steady_clock::now();

  for (int c = 0; c < plan.n_chunks; ++c) {
    const auto chunk_tokens = tokens.subspan(static_cast<size_t>(c) * plan.n_ctx, plan.n_ctx);
    std::copy(chunk_tokens.begin(), chunk_tokens.end(), chunk.begin());
    if (add_bos) chunk[0] = tok.bos();
    auto target = [&](int i) { return chunk_tokens[plan.first + i + 1]; };
    const int64_t record_row0 = record_to ? record_to->add_chunk(chunk_tokens) : 0;
    const int64_t base_row0 = static_cast<int64_t>(c) * n_scored;
    evaluator.eval(chunk, [&](int i0, std::span<const float> logits) {
      // Row i - i0 holds the logits at position first + i, which predict the
      // token at first + i + 1.
      auto row = [&](int i) { return logits.subspan(static_cast<size_t>(i - i0) * n_vocab, n_vocab); };
      const int n_rows = static_cast<int>(logits.size() / n_vocab);
      evaluator.pool().parallel_for(n_rows, [&](int64_t j0, int64_t j1, int) {
        for (int i = i0 + static_cast<int>(j0); i < i0 + static_cast<int>(j1); ++i) {
          if (compare_with) {
            kl_tokens[i] = compare_row(row(i), compare_with->row(base_row0 + i), target(i));
            nll[i] = kl_tokens[i].nll;
          } else {
            nll[i] = row_nll(row_softmax(row(i)), row(i), target(i));
          }
          if (record_to) record_to->fill_row(record_row0 + i, row(i), target(i));
        }
      });
    });

    // Sums in position order, so results do not depend on the thread count.
    for (int i = 0; i < n_scored; ++i) {
      r.nll_sum += nll[i];
      r.nll2_sum += nll[i] * nll[i];
      if (compare_with) kl_stats.add(kl_tokens[i]);
    }
    r.n_scored += n_scored;
    r.running_ppl.push_back(std::exp(r.nll_sum / r.n_scored));

    if (progress) {
      PerplexityProgress p;
      p.chunk = c + 1;
      p.n_chunks = plan.n_chunks;
      p.engine = &r.engine;
      p.ppl = r.running_ppl.back();
      p.seconds = elapsed(t0);
      p.eta_seconds = p.seconds / p.chunk * (plan.n_chunks - p.chunk);
      KlSummary running;
      if (compare_with) {
        running = kl_stats.running();
        p.kl = &running;
      }
      progress(p);
    }
  }

  r.seconds = elapsed(t0);
  const PplEstimate e = ppl_estimate(r.nll_sum, r.nll2_sum, r.n_scored);
  r.ppl = e.ppl;
  r.ppl_error = e.error;
  if (compare_with) r.kl = kl_stats.summary();
  return r;
}

PerplexityResult run_kl_divergence(const Model& model, const LogitsRecord& base, const PerplexityOptions& options,
                                   const PerplexityProgressFn& progress) {
  PerplexityOptions o = options;
  o.n_ctx = base.n_ctx();
  if (o.n_chunks < 0 || o.n_chunks > base.n_chunks()) o.n_chunks = base.n_chunks();
  return run_perplexity(model, base.tokens(), o, nullptr, &base, progress);
}

std::string format_running_ppl(int chunk, double ppl) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%d]%.4f,", chunk, ppl);
  return buf;
}

std::string format_final_estimate(const PerplexityResult& r) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "Final estimate: PPL = %.4f +/- %.5f", r.ppl, r.ppl_error);
  return buf;
}

}  // namespace kestrel
