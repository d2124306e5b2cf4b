#pragma once
// KL divergence of a run against a saved baseline, in the manner of
// llama-perplexity's --kl-divergence-base / --kl-divergence, with our own
// compact baseline format.
//
// What is compared. For each scored position (the same positions perplexity
// scores) the baseline keeps its K most likely next tokens T = {t_1..t_K}
// (K = 32 by default) and their log-probs, plus the log of the probability mass
// of all other tokens ("rest"). Both runs are reduced to the same K + 1 buckets
// - the base's top-K ids and one rest bucket -
//     P = (p(t_1), ..., p(t_K), 1 - sum_i p(t_i))   from the baseline,
//     Q = (q(t_1), ..., q(t_K), 1 - sum_i q(t_i))   from the run under test,
// and the per-token divergence is
//     KLD = sum_b P_b * (log P_b - log Q_b)          (nats; terms with P_b = 0 are 0).
// This is the KL divergence of the distributions coarsened onto the buckets, so
// 0 <= KLD <= KL(full P || full Q) (data-processing inequality); it equals the
// full divergence when the top-K hold all of the base's mass, and misses only
// how the rest mass is spread among the other tokens. (llama.cpp instead stores
// every log-prob quantized to 16 bits and drops tokens with p < e^-16.) Each
// log-prob is computed in double from the logits and rounded to float by one
// routine (row_logp) on both sides, so a run compared with its own baseline
// gives exactly 0.
//
// Baseline file (little-endian):
//   char  magic[8]       "KSTLPRB\0"
//   u32   version        1
//   u32   n_vocab        the model's vocabulary size
//   u32   n_ctx          tokens per chunk
//   u32   n_chunks
//   u32   top_k          K
//   u32   n_scored       scored positions per chunk: n_ctx - 1 - n_ctx/2
//   i32   tokens[n_chunks * n_ctx]   the evaluated text (before BOS substitution)
//   then n_chunks * n_scored rows, in chunk and position order, each
//     f32 logp_target    base log-prob of the token that actually follows
//     f32 logp_rest      log of the mass outside the top-K (-inf if none)
//     i32 ids[top_k]     top-K ids, most likely first (ties: lower id first)
//     f32 logp[top_k]    their log-probs
// A row is 8 + 8K bytes (264 for K = 32).
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

namespace kestrel {

inline constexpr int kLogProbTopK = 32;

// A baseline: header, tokens and per-scored-token truncated log-probs.
class LogitsRecord {
 public:
  struct Row {
    float logp_target = 0.0f;
    float logp_rest = 0.0f;
    std::span<const int32_t> ids;   // [top_k]
    std::span<const float> logp;    // [top_k]
  };

  LogitsRecord() = default;
  // An empty record for a run; top_k is clamped to n_vocab.
  LogitsRecord(int n_vocab, int n_ctx, int top_k = kLogProbTopK);

  int n_vocab() const { return n_vocab_; }
  int n_ctx() const { return n_ctx_; }
  int top_k() const { return top_k_; }
  int n_chunks() const { return n_chunks_; }
  int n_scored_per_chunk() const { return n_ctx_ - 1 - n_ctx_ / 2; }
  int64_t n_rows() const { return static_cast<int64_t>(logp_target_.size()); }
  // [n_chunks * n_ctx]
  const std::vector<int32_t>& tokens() const { return tokens_; }
  Row row(int64_t i) const;

  // Appends a chunk: its n_ctx tokens and room for n_scored rows, which
  // fill_row then sets (distinct rows may be filled from different threads).
  // Returns the index of the chunk's first row.
  int64_t add_chunk(std::span<const int32_t> chunk_tokens);
  // Truncates one row of logits ([n_vocab]) whose next token is `target`.
  void fill_row(int64_t i, std::span<const float> logits, int32_t target);

  void write(std::ostream& out) const;
  void save(const std::string& path) const;
  // Validates everything (magic, version, sizes against the bytes present, ids
  // in range); throws kestrel::Error naming the problem.
  static LogitsRecord read(std::istream& in, const std::string& name = "logits record");
  static LogitsRecord load(const std::string& path);

 private:
  int n_vocab_ = 0, n_ctx_ = 0, top_k_ = 0, n_chunks_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<float> logp_target_, logp_rest_;  // [n_rows]
  std::vector<int32_t> ids_;                     // [n_rows, top_k]
  std::vector<float> logp_;                      // [n_rows, top_k]
};

// One scored position compared with its baseline row.
struct KlToken {
  double kld = 0.0;       // truncated KL(base || run), see the header comment
  double nll = 0.0;       // -log q(target), full softmax of the run
  double nll_base = 0.0;  // -log p(target) from the baseline
  double p_diff = 0.0;    // q(target) - p(target)
  bool same_top = false;  // the run's argmax equals the base's most likely token
};

// Compares one row of logits ([n_vocab]) with a baseline row.
KlToken compare_row(std::span<const float> logits, const LogitsRecord::Row& base, int32_t target);

struct ValueError {
  double value = 0.0;
  double error = 0.0;  // one standard error
};

// Quantiles of a sample (linear interpolation between order statistics).
struct Quantiles {
  double min = 0, p0_1 = 0, p1 = 0, p5 = 0, p10 = 0, p25 = 0, median = 0, p75 = 0, p90 = 0, p95 = 0, p99 = 0,
         p99_9 = 0, max = 0;
};

struct KlSummary {
  int64_t count = 0;
  ValueError ppl, ppl_base;
  double ln_ppl_correlation = 0.0;  // of the per-token ln-probabilities' means
  ValueError ln_ppl_ratio;          // mean ln(PPL(run) / PPL(base))
  ValueError ppl_ratio, ppl_diff;
  ValueError kld;
  Quantiles kld_q;
  ValueError p_diff;                // mean q(target) - p(target)
  Quantiles p_diff_q;
  ValueError rms_p_diff;
  ValueError same_top;              // fraction of positions whose argmax agrees
};

// Accumulates KlToken values in order; keeps the per-token KLD and Δp for the
// quantiles.
class KlStats {
 public:
  void add(const KlToken& t);
  int64_t count() const { return count_; }
  // Everything, quantiles included (sorts copies of the samples).
  KlSummary summary() const;
  // The running figures without quantiles (cheap; for per-chunk lines).
  KlSummary running() const;

 private:
  int64_t count_ = 0;
  double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_base_ = 0, sum_nll_base2_ = 0, sum_nll_nll_base_ = 0;
  double sum_kld_ = 0, sum_kld2_ = 0, sum_p_diff_ = 0, sum_p_diff2_ = 0, sum_p_diff4_ = 0;
  int64_t n_same_top_ = 0;
  std::vector<double> kld_, p_diff_;
};

// llama-perplexity's per-chunk table (header, then one line per chunk) and its
// closing statistics blocks, with the same labels and number formats.
std::string format_kl_chunk_header();
std::string format_kl_chunk_line(int chunk, const KlSummary& running);
std::string format_kl_summary(const KlSummary& s);

}  // namespace kestrel
