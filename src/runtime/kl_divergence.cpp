#include "runtime/kl_divergence.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

#include "core/error.h"
#include "core/printf.h"
#include "runtime/perplexity_math.h"

namespace kestrel {
namespace {

constexpr char kMagic[8] = {'K', 'S', 'T', 'L', 'P', 'R', 'B', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 8 + 6 * 4;
// Sanity bounds for a header read from disk (far above anything real).
constexpr uint32_t kMaxCtx = 1u << 24;
constexpr uint32_t kMaxVocab = 1u << 24;
constexpr uint32_t kMaxTopK = 1u << 16;

template <typename T>
void put(std::ostream& out, const T& v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
void put_array(std::ostream& out, const T* p, size_t n) {
  out.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n * sizeof(T)));
}

// Bounds-checked reads from an in-memory copy of the file.
class Cursor {
 public:
  Cursor(const std::string& bytes, const std::string& name) : bytes_(bytes), name_(name) {}
  size_t left() const { return bytes_.size() - at_; }
  void need(size_t n, const char* what) const {
    if (n > left()) fail(name_, ": truncated while reading ", what, " (", n, " bytes needed, ", left(), " left)");
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  template <typename T>
  void get_array(T* out, size_t n, const char* what) {
    need(n * sizeof(T), what);
    std::memcpy(out, bytes_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
  }

 private:
  const std::string& bytes_;
  const std::string& name_;
  size_t at_ = 0;
};

const auto fmt = printf_string;

// Mean of a per-token quantity and the standard error of that mean; the error
// is reported only from 11 samples on, as llama-perplexity does.
ValueError mean_error(double sum, double sum2, int64_t n) {
  if (n < 1) return {};
  const double mean = sum / n;
  const double var = sum2 / n - mean * mean;
  return {mean, var > 0.0 && n > 10 ? std::sqrt(var / (n - 1)) : 0.0};
}

// Covariance of the two means (same normalisation as mean_error's error^2).
double mean_covariance(double sum_a, double sum_b, double sum_ab, int64_t n) {
  if (n < 10) return 0.0;
  return (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1);
}

double quantile(const std::vector<double>& sorted, double fraction) {
  if (sorted.empty()) return 0.0;
  if (fraction <= 0.0) return sorted.front();
  if (fraction >= 1.0) return sorted.back();
  const double x = fraction * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(x);
  const double w = x - static_cast<double>(i);
  return (1.0 - w) * sorted[i] + w * sorted[std::min(i + 1, sorted.size() - 1)];
}

Quantiles quantiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Quantiles q;
  q.min = quantile(v, 0.0);
  q.p0_1 = quantile(v, 0.001);
  q.p1 = quantile(v, 0.01);
  q.p5 = quantile(v, 0.05);
  q.p10 = quantile(v, 0.10);
  q.p25 = quantile(v, 0.25);
  q.median = quantile(v, 0.5);
  q.p75 = quantile(v, 0.75);
  q.p90 = quantile(v, 0.90);
  q.p95 = quantile(v, 0.95);
  q.p99 = quantile(v, 0.99);
  q.p99_9 = quantile(v, 0.999);
  q.max = quantile(v, 1.0);
  return q;
}

}  // namespace

// ---- LogitsRecord ----

LogitsRecord::LogitsRecord(int n_vocab, int n_ctx, int top_k) : n_vocab_(n_vocab), n_ctx_(n_ctx) {
  if (n_vocab <= 0) fail("logits record: vocabulary size must be positive, got ", n_vocab);
  if (n_ctx < 4) fail("logits record: context must hold at least 4 tokens, got ", n_ctx);
  if (top_k <= 0) fail("logits record: top-k must be positive, got ", top_k);
  top_k_ = std::min(top_k, n_vocab);
}

LogitsRecord::Row LogitsRecord::row(int64_t i) const {
  if (i < 0 || i >= n_rows()) fail("logits record: row ", i, " out of range (", n_rows(), " rows)");
  const size_t k = static_cast<size_t>(top_k_);
  return Row{logp_target_[i], logp_rest_[i], std::span<const int32_t>(ids_.data() + i * k, k),
             std::span<const float>(logp_.data() + i * k, k)};
}

int64_t LogitsRecord::add_chunk(std::span<const int32_t> chunk_tokens) {
  if (static_cast<int>(chunk_tokens.size()) != n_ctx_)
    fail("logits record: a chunk has ", chunk_tokens.size(), " tokens, expected ", n_ctx_);
  const int64_t first = n_rows();
  const size_t rows = static_cast<size_t>(first + n_scored_per_chunk());
  tokens_.insert(tokens_.end(), chunk_tokens.begin(), chunk_tokens.end());
  logp_target_.resize(rows);
  logp_rest_.resize(rows);
  ids_.resize(rows * top_k_);
  logp_.resize(rows * top_k_);
  ++n_chunks_;
  return first;
}

void LogitsRecord::fill_row(int64_t i, std::span<const float> logits, int32_t target) {
  if (i < 0 || i >= n_rows()) fail("logits record: row ", i, " out of range (", n_rows(), " rows)");
  if (static_cast<int>(logits.size()) != n_vocab_)
    fail("logits record: a row has ", logits.size(), " logits, expected ", n_vocab_);
  if (target < 0 || target >= n_vocab_) fail("logits record: target token ", target, " out of range");
  const RowSoftmax s = row_softmax(logits);
  const std::vector<int32_t> top = top_k_ids(logits, top_k_);
  const size_t k = static_cast<size_t>(top_k_);
  std::copy(top.begin(), top.end(), ids_.begin() + i * k);
  bucket_logprobs(logits, s, top, logp_.data() + i * k, &logp_rest_[i]);
  logp_target_[i] = row_logp(s, logits[target]);
}

void LogitsRecord::write(std::ostream& out) const {
  out.write(kMagic, sizeof kMagic);
  put<uint32_t>(out, kVersion);
  put<uint32_t>(out, static_cast<uint32_t>(n_vocab_));
  put<uint32_t>(out, static_cast<uint32_t>(n_ctx_));
  put<uint32_t>(out, static_cast<uint32_t>(n_chunks_));
  put<uint32_t>(out, static_cast<uint32_t>(top_k_));
  put<uint32_t>(out, static_cast<uint32_t>(n_scored_per_chunk()));
  put_array(out, tokens_.data(), tokens_.size());
  const size_t k = static_cast<size_t>(top_k_);
  for (int64_t i = 0; i < n_rows(); ++i) {
    put(out, logp_target_[i]);
    put(out, logp_rest_[i]);
    put_array(out, ids_.data() + i * k, k);
    put_array(out, logp_.data() + i * k, k);
  }
}

void LogitsRecord::save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot open ", path, " for writing");
  write(out);
  out.flush();
  if (!out) fail("failed writing ", path);
}

LogitsRecord LogitsRecord::read(std::istream& in, const std::string& name) {
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Cursor c(bytes, name);
  char magic[8];
  c.get_array(magic, 8, "the magic");
  if (std::memcmp(magic, kMagic, 8) != 0) fail(name, ": not a kestrel logits record (bad magic)");
  const auto version = c.get<uint32_t>("the version");
  if (version != kVersion) fail(name, ": unsupported version ", version, " (this build reads ", kVersion, ")");
  const auto n_vocab = c.get<uint32_t>("n_vocab");
  const auto n_ctx = c.get<uint32_t>("n_ctx");
  const auto n_chunks = c.get<uint32_t>("n_chunks");
  const auto top_k = c.get<uint32_t>("top_k");
  const auto n_scored = c.get<uint32_t>("n_scored");
  if (n_vocab == 0 || n_vocab > kMaxVocab) fail(name, ": n_vocab ", n_vocab, " out of range");
  if (n_ctx < 4 || n_ctx > kMaxCtx) fail(name, ": n_ctx ", n_ctx, " out of range (4..", kMaxCtx, ")");
  if (top_k == 0 || top_k > n_vocab || top_k > kMaxTopK)
    fail(name, ": top_k ", top_k, " out of range (1..", std::min(n_vocab, kMaxTopK), ")");
  if (n_scored != n_ctx - 1 - n_ctx / 2)
    fail(name, ": n_scored ", n_scored, " does not match n_ctx ", n_ctx, " (expected ", n_ctx - 1 - n_ctx / 2, ")");
  // Everything is bounded by the bytes present before anything is allocated.
  const uint64_t row_bytes = 8 + 8 * uint64_t{top_k};
  const uint64_t want = uint64_t{n_chunks} * n_ctx * 4 + uint64_t{n_chunks} * n_scored * row_bytes;
  if (want != c.left())
    fail(name, ": ", c.left(), " bytes after the header, expected ", want, " for ", n_chunks, " chunks of ", n_ctx,
         " tokens and top_k ", top_k);

  LogitsRecord r(static_cast<int>(n_vocab), static_cast<int>(n_ctx), static_cast<int>(top_k));
  const size_t n_tokens = size_t{n_chunks} * n_ctx;
  std::vector<int32_t> tokens(n_tokens);
  c.get_array(tokens.data(), n_tokens, "tokens");
  for (int32_t t : tokens)
    if (t < 0 || static_cast<uint32_t>(t) >= n_vocab) fail(name, ": token id ", t, " out of range");
  for (uint32_t ch = 0; ch < n_chunks; ++ch)
    r.add_chunk(std::span<const int32_t>(tokens).subspan(size_t{ch} * n_ctx, n_ctx));
  const size_t k = top_k;
  std::vector<int32_t> sorted(k);
  for (int64_t i = 0; i < r.n_rows(); ++i) {
    r.logp_target_[i] = c.get<float>("a row");
    r.logp_rest_[i] = c.get<float>("a row");
    c.get_array(r.ids_.data() + i * k, k, "a row");
    c.get_array(r.logp_.data() + i * k, k, "a row");
    std::copy(r.ids_.begin() + i * k, r.ids_.begin() + (i + 1) * k, sorted.begin());
    std::sort(sorted.begin(), sorted.end());
    if (sorted.front() < 0 || static_cast<uint32_t>(sorted.back()) >= n_vocab)
      fail(name, ": row ", i, " holds a token id out of range");
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
      fail(name, ": row ", i, " repeats a token id");
  }
  return r;
}

LogitsRecord LogitsRecord::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open logits record ", path);
  return read(in, path);
}

// ---- comparison ----

KlToken compare_row(std::span<const float> logits, const LogitsRecord::Row& base, int32_t target) {
  const size_t k = base.ids.size();
  if (k == 0 || base.logp.size() != k) fail("kl divergence: empty baseline row");
  if (target < 0 || static_cast<size_t>(target) >= logits.size())
    fail("kl divergence: target token ", target, " out of range");
  for (int32_t id : base.ids)
    if (id < 0 || static_cast<size_t>(id) >= logits.size())
      fail("kl divergence: baseline token ", id, " outside the vocabulary of ", logits.size());
  const RowSoftmax s = row_softmax(logits);
  float lq_small[kLogProbTopK];
  std::vector<float> lq_big;
  float* lq = lq_small;
  if (k > static_cast<size_t>(kLogProbTopK)) {
    lq_big.resize(k);
    lq = lq_big.data();
  }
  float lq_rest = 0.0f;
  bucket_logprobs(logits, s, base.ids, lq, &lq_rest);

  KlToken t;
  double kld = 0.0;
  for (size_t i = 0; i < k; ++i) {
    const double lp = base.logp[i];
    kld += std::exp(lp) * (lp - static_cast<double>(lq[i]));
  }
  if (std::isfinite(base.logp_rest)) {
    const double lp = base.logp_rest;
    kld += std::exp(lp) * (lp - static_cast<double>(lq_rest));
  }
  t.kld = kld;
  t.nll = row_nll(s, logits, target);
  t.nll_base = -static_cast<double>(base.logp_target);
  t.p_diff = std::exp(-t.nll) - std::exp(-t.nll_base);
  t.same_top = s.argmax == base.ids[0];
  return t;
}

void KlStats::add(const KlToken& t) {
  ++count_;
  sum_nll_ += t.nll;
  sum_nll2_ += t.nll * t.nll;
  sum_nll_base_ += t.nll_base;
  sum_nll_base2_ += t.nll_base * t.nll_base;
  sum_nll_nll_base_ += t.nll * t.nll_base;
  sum_kld_ += t.kld;
  sum_kld2_ += t.kld * t.kld;
  sum_p_diff_ += t.p_diff;
  const double d2 = t.p_diff * t.p_diff;
  sum_p_diff2_ += d2;
  sum_p_diff4_ += d2 * d2;
  n_same_top_ += t.same_top ? 1 : 0;
  kld_.push_back(t.kld);
  p_diff_.push_back(t.p_diff);
}

KlSummary KlStats::running() const {
  KlSummary s;
  s.count = count_;
  if (count_ == 0) return s;
  const ValueError ln_q = mean_error(sum_nll_, sum_nll2_, count_);
  const ValueError ln_b = mean_error(sum_nll_base_, sum_nll_base2_, count_);
  const double cov = mean_covariance(sum_nll_, sum_nll_base_, sum_nll_nll_base_, count_);
  s.ppl = {std::exp(ln_q.value), std::exp(ln_q.value) * ln_q.error};
  s.ppl_base = {std::exp(ln_b.value), std::exp(ln_b.value) * ln_b.error};
  const double err_prod = ln_q.error * ln_b.error;
  s.ln_ppl_correlation = err_prod > 0.0 ? cov / err_prod : 0.0;
  const double ratio_var = ln_q.error * ln_q.error + ln_b.error * ln_b.error - 2.0 * cov;
  s.ln_ppl_ratio = {ln_q.value - ln_b.value, std::sqrt(std::max(ratio_var, 0.0))};
  s.ppl_ratio = {std::exp(s.ln_ppl_ratio.value), std::exp(s.ln_ppl_ratio.value) * s.ln_ppl_ratio.error};
  const double ppl_cov = s.ppl.value * s.ppl_base.value * cov;
  const double diff_var = s.ppl.error * s.ppl.error + s.ppl_base.error * s.ppl_base.error - 2.0 * ppl_cov;
  s.ppl_diff = {s.ppl.value - s.ppl_base.value, std::sqrt(std::max(diff_var, 0.0))};
  s.kld = mean_error(sum_kld_, sum_kld2_, count_);
  s.p_diff = mean_error(sum_p_diff_, sum_p_diff2_, count_);
  const ValueError mse = mean_error(sum_p_diff2_, sum_p_diff4_, count_);
  const double rms = std::sqrt(std::max(mse.value, 0.0));
  s.rms_p_diff = {rms, rms > 0.0 ? 0.5 / rms * mse.error : 0.0};
  const double top = static_cast<double>(n_same_top_) / count_;
  s.same_top = {top, count_ > 1 ? std::sqrt(top * (1.0 - top) / (count_ - 1)) : 0.0};
  return s;
}

KlSummary KlStats::summary() const {
  KlSummary s = running();
  s.kld_q = quantiles(kld_);
  s.p_diff_q = quantiles(p_diff_);
  return s;
}

// ---- printing ----

std::string format_kl_chunk_header() {
  return "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
         "\xCE\x94p RMS            Same top p\n";
}

std::string format_kl_chunk_line(int chunk, const KlSummary& r) {
  std::string s = fmt("%4d", chunk);
  s += fmt("    %9.4lf \xC2\xB1 %9.4lf", r.ppl.value, r.ppl.error);
  s += fmt("    %10.5lf \xC2\xB1 %10.5lf", r.ln_ppl_ratio.value, r.ln_ppl_ratio.error);
  s += fmt("    %10.5lf \xC2\xB1 %10.5lf", r.kld.value, r.kld.error);
  s += fmt("    %6.3lf \xC2\xB1 %6.3lf %%", 100.0 * r.rms_p_diff.value, 100.0 * r.rms_p_diff.error);
  s += fmt("    %6.3lf \xC2\xB1 %6.3lf %%", 100.0 * r.same_top.value, 100.0 * r.same_top.error);
  return s + "\n";
}

std::string format_kl_summary(const KlSummary& s) {
  const char* pm = "\xC2\xB1";  // ±
  std::string o = "====== Perplexity statistics ======\n";
  o += fmt("Mean PPL(Q)                   : %10.6lf %s %10.6lf\n", s.ppl.value, pm, s.ppl.error);
  o += fmt("Mean PPL(base)                : %10.6lf %s %10.6lf\n", s.ppl_base.value, pm, s.ppl_base.error);
  o += fmt("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * s.ln_ppl_correlation);
  o += fmt("Mean ln(PPL(Q)/PPL(base))     : %10.6lf %s %10.6lf\n", s.ln_ppl_ratio.value, pm, s.ln_ppl_ratio.error);
  o += fmt("Mean PPL(Q)/PPL(base)         : %10.6lf %s %10.6lf\n", s.ppl_ratio.value, pm, s.ppl_ratio.error);
  o += fmt("Mean PPL(Q)-PPL(base)         : %10.6lf %s %10.6lf\n", s.ppl_diff.value, pm, s.ppl_diff.error);
  o += "\n====== KL divergence statistics ======\n";
  o += fmt("Mean    KLD: %10.6lf %s %10.6lf\n", s.kld.value, pm, s.kld.error);
  const Quantiles& k = s.kld_q;
  o += fmt("Maximum KLD: %10.6f\n", k.max);
  o += fmt("99.9%%   KLD: %10.6f\n", k.p99_9);
  o += fmt("99.0%%   KLD: %10.6f\n", k.p99);
  o += fmt("95.0%%   KLD: %10.6f\n", k.p95);
  o += fmt("90.0%%   KLD: %10.6f\n", k.p90);
  o += fmt("Median  KLD: %10.6f\n", k.median);
  o += fmt("10.0%%   KLD: %10.6f\n", k.p10);
  o += fmt(" 5.0%%   KLD: %10.6f\n", k.p5);
  o += fmt(" 1.0%%   KLD: %10.6f\n", k.p1);
  o += fmt(" 0.1%%   KLD: %10.6f\n", k.p0_1);
  o += fmt("Minimum KLD: %10.6f\n", k.min);
  o += "\n====== Token probability statistics ======\n";
  const char* dp = "\xCE\x94p";  // Δp
  o += fmt("Mean    %s: %6.3lf %s %5.3lf %%\n", dp, 100.0 * s.p_diff.value, pm, 100.0 * s.p_diff.error);
  const Quantiles& p = s.p_diff_q;
  o += fmt("Maximum %s: %6.3lf%%\n", dp, 100.0 * p.max);
  o += fmt("99.9%%   %s: %6.3lf%%\n", dp, 100.0 * p.p99_9);
  o += fmt("99.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p99);
  o += fmt("95.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p95);
  o += fmt("90.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p90);
  o += fmt("75.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p75);
  o += fmt("Median  %s: %6.3lf%%\n", dp, 100.0 * p.median);
  o += fmt("25.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p25);
  o += fmt("10.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p10);
  o += fmt(" 5.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p5);
  o += fmt(" 1.0%%   %s: %6.3lf%%\n", dp, 100.0 * p.p1);
  o += fmt(" 0.1%%   %s: %6.3lf%%\n", dp, 100.0 * p.p0_1);
  o += fmt("Minimum %s: %6.3lf%%\n", dp, 100.0 * p.min);
  o += fmt("RMS %s    : %6.3lf %s %5.3lf %%\n", dp, 100.0 * s.rms_p_diff.value, pm, 100.0 * s.rms_p_diff.error);
  o += fmt("Same top p: %6.3lf %s %5.3lf %%\n", 100.0 * s.same_top.value, pm, 100.0 * s.same_top.error);
  return o;
}

}  // namespace kestrel
