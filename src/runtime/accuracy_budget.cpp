#include "runtime/accuracy_budget.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace kestrel {
namespace {

// A finite number and nothing after it but an optional '%'; `percent` says
// whether one was there.
double parse_number(std::string_view flag, std::string_view text, bool* percent) {
  std::string_view t = text;
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  *percent = !t.empty() && t.back() == '%';
  if (*percent) t.remove_suffix(1);
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  double v = 0.0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size() || !std::isfinite(v))
    fail(flag, ": '", text, "' is not a number");
  if (v < 0) fail(flag, ": '", text, "' must not be negative");
  return v;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

double parse_max_kld(std::string_view text) {
  bool percent = false;
  const double v = parse_number("--max-kld", text, &percent);
  if (percent) fail("--max-kld: '", text, "': KLD is in nats, not percent (e.g. 0.01)");
  return v;
}

double parse_max_ppl_increase(std::string_view text) {
  bool percent = false;
  return parse_number("--max-ppl-increase", text, &percent) / 100.0;
}

double parse_min_top1(std::string_view text) {
  bool percent = false;
  double v = parse_number("--min-top1", text, &percent);
  if (percent) v /= 100.0;
  if (v > 1.0) fail("--min-top1: '", text, "' is more than all positions (a share in [0, 1], or N%)");
  return v;
}

std::string over_budget(const AccuracyFigures& f, const AccuracyBudget& b) {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
  if (b.max_kld && f.kld > *b.max_kld) add("KLD " + fmt("%.4g", f.kld) + " > " + fmt("%g", *b.max_kld));
  if (b.max_ppl_increase && f.ppl_increase > *b.max_ppl_increase)
    add("PPL " + fmt("%+.2f", 100 * f.ppl_increase) + " % > +" + fmt("%g", 100 * *b.max_ppl_increase) + " %");
  if (b.min_top1 && f.top1 < *b.min_top1)
    add("top-1 " + fmt("%.1f", 100 * f.top1) + " % < " + fmt("%g", 100 * *b.min_top1) + " %");
  return out;
}

double budget_use(const AccuracyFigures& f, const AccuracyBudget& b) {
  double use = 0.0;
  // A zero limit is met only by a zero figure: any loss uses it infinitely.
  auto ratio = [](double figure, double limit) {
    if (limit > 0) return figure / limit;
    return figure > 0 ? INFINITY : 0.0;
  };
  if (b.max_kld) use = std::max(use, ratio(f.kld, *b.max_kld));
  if (b.max_ppl_increase) use = std::max(use, ratio(std::max(0.0, f.ppl_increase), *b.max_ppl_increase));
  if (b.min_top1) use = std::max(use, ratio(1.0 - f.top1, 1.0 - *b.min_top1));
  return use;
}

std::string describe(const AccuracyFigures& f) {
  return "KLD " + fmt("%.4g", f.kld) + ", top-1 " + fmt("%.1f", 100 * f.top1) + " %, PPL " +
         fmt("%+.2f", 100 * f.ppl_increase) + " % (" + std::to_string(f.positions) + " positions)";
}

std::string describe(const AccuracyBudget& b) {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
  if (b.max_kld) add("KLD <= " + fmt("%g", *b.max_kld));
  if (b.max_ppl_increase) add("PPL <= +" + fmt("%g", 100 * *b.max_ppl_increase) + " %");
  if (b.min_top1) add("top-1 >= " + fmt("%g", 100 * *b.min_top1) + " %");
  return out.empty() ? "no budget" : out;
}

}  // namespace kestrel
