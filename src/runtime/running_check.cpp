#include "runtime/running_check.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/accuracy_probe.h"

namespace kestrel {
namespace {

SessionOptions exact_session(const RunningCheckOptions& o) {
  SessionOptions so;
  so.n_ctx = o.n_ctx;
  so.n_batch = 512;
  so.engine = o.exact;
  so.engine.decode = DecodeConfig{};
  return so;
}

}  // namespace

RunningCheck::RunningCheck(const Model& model, const RunningCheckOptions& o) : o_(o), exact_(model, exact_session(o)) {
  if (o_.every < 1) fail("running check: every must be at least 1, got ", o_.every);
  if (o_.min_checks < 1) fail("running check: min_checks must be at least 1, got ", o_.min_checks);
  if (o_.follow_every < 1) fail("running check: follow_every must be at least 1, got ", o_.follow_every);
}

bool RunningCheck::observe(uint64_t request, std::span<const int32_t> history, std::span<const float> logits,
                           std::optional<double> step_seconds) {
  if (++steps_ % o_.every == 0) due_ = true;
  if (!due_ || history.empty() || static_cast<int64_t>(history.size()) > exact_.n_ctx()) return false;
  if (following_ != 0 && following_ != request) return false;  // the followed request's row comes later
  if (following_ != request) {
    if (std::find(passed_over_.begin(), passed_over_.end(), request) != passed_over_.end()) return false;
    if (candidates_++ % static_cast<uint64_t>(o_.follow_every) != 0) {
      passed_over_.push_back(request);
      return false;
    }
    exact_.clear();
  }
  following_ = request;
  due_ = false;
  // Only the tokens the exact session has not seen are evaluated. A timed
  // check catches up to the token before (when it is not there already), then
  // decodes the last one alone, as the engine's step did.
  std::span<const float> exact;
  if (step_seconds && history.size() > 1) {
    const auto before = history.first(history.size() - 1);
    const std::vector<int32_t>& seen = exact_.history();
    if (!std::equal(before.begin(), before.end(), seen.begin(), seen.end())) exact_.set_history(before);
    const auto t0 = std::chrono::steady_clock::now();
    exact = exact_.decode(history.back());
    exact_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    running_seconds_ += *step_seconds;
    ++timed_;
  } else {
    exact = exact_.set_history(history);
  }
  const RowComparison c = compare_logits(exact, logits);
  ++checks_;
  kld_sum_ += c.kld;
  same_ += c.same_top ? 1 : 0;
  return true;
}

void RunningCheck::end(uint64_t request) {
  if (request == following_) following_ = 0;
  std::erase(passed_over_, request);
}

RunningCheck::Figures RunningCheck::figures() const {
  Figures f;
  f.checks = checks_;
  if (checks_ > 0) {
    f.kld = kld_sum_ / static_cast<double>(checks_);
    f.top1 = static_cast<double>(same_) / static_cast<double>(checks_);
  }
  f.timed = timed_;
  if (timed_ > 0 && running_seconds_ > 0) f.speedup = exact_seconds_ / running_seconds_;
  return f;
}

std::string RunningCheck::over_budget() const {
  if (checks_ < o_.min_checks) return "";
  const Figures f = figures();
  AccuracyFigures a;
  a.kld = f.kld;
  a.top1 = f.top1;
  a.positions = static_cast<int>(f.checks);
  AccuracyBudget b = o_.budget;
  b.max_ppl_increase.reset();  // the sampled tokens are not a text to score
  return kestrel::over_budget(a, b);
}

void RunningCheck::reset() {
  checks_ = same_ = 0;
  kld_sum_ = 0.0;
  timed_ = 0;
  exact_seconds_ = running_seconds_ = 0.0;
  steps_ = 0;
  due_ = false;
}

}  // namespace kestrel
