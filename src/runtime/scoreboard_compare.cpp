#include "runtime/scoreboard_compare.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/printf.h"

namespace kestrel {
namespace {

nlohmann::json measured_json(const Measured& m) { return {{"mean", m.mean}, {"stddev", m.stddev}, {"n", m.n}}; }

Measured measured_from(const nlohmann::json& j) {
  Measured m;
  m.mean = j.at("mean").get<double>();
  m.stddev = j.at("stddev").get<double>();
  m.n = j.at("n").get<int>();
  return m;
}

template <typename T>
void put(nlohmann::json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}

template <typename T>
void get(const nlohmann::json& j, const char* key, std::optional<T>& v) {
  if (j.contains(key) && !j.at(key).is_null()) v = j.at(key).get<T>();
}

// The standard error of a mean (0 with one sample: no spread known).
double standard_error(const Measured& m) { return m.n > 1 ? m.stddev / std::sqrt(static_cast<double>(m.n)) : 0.0; }

}  // namespace

std::string scoreboard_json(const Scoreboard& s) {
  nlohmann::json j;
  j["kestrel_scoreboard"] = 1;
  j["model"] = s.model;
  j["settings"] = s.settings;
  j["rows"] = nlohmann::json::array();
  for (const auto& r : s.rows) {
    nlohmann::json row = {{"label", r.label},
                          {"changes", r.changes},
                          {"unsupported", r.unsupported},
                          {"pp_ts", measured_json(r.pp_ts)},
                          {"tg_ts", measured_json(r.tg_ts)},
                          {"peak_rss_bytes", r.peak_rss_bytes}};
    put(row, "ppl", r.ppl);
    put(row, "kld_mean", r.kld_mean);
    put(row, "kld_p99", r.kld_p99);
    put(row, "top1_agree", r.top1_agree);
    j["rows"].push_back(row);
  }
  return j.dump(1) + "\n";
}

Scoreboard scoreboard_from_json(const std::string& text, const std::string& name) {
  Scoreboard s;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object() || j.value("kestrel_scoreboard", 0) != 1)
      fail("not a kestrel scoreboard (kestrel ab writes scoreboard.json)");
    s.model = j.at("model").get<std::string>();
    s.settings = j.at("settings").get<std::string>();
    for (const auto& r : j.at("rows")) {
      ScoreRow row;
      row.label = r.at("label").get<std::string>();
      row.changes = r.value("changes", "");
      row.unsupported = r.value("unsupported", "");
      row.pp_ts = measured_from(r.at("pp_ts"));
      row.tg_ts = measured_from(r.at("tg_ts"));
      row.peak_rss_bytes = r.at("peak_rss_bytes").get<double>();
      get(r, "ppl", row.ppl);
      get(r, "kld_mean", row.kld_mean);
      get(r, "kld_p99", row.kld_p99);
      get(r, "top1_agree", row.top1_agree);
      s.rows.push_back(row);
    }
    if (s.rows.empty() || s.rows[0].label != "baseline") fail("its first row is not the baseline");
  } catch (const Error& e) {
    fail(name, ": ", e.what());
  } catch (const std::exception& e) {
    fail(name, ": not a readable scoreboard (", e.what(), ")");
  }
  return s;
}

std::string ScoreChange::text() const {
  return row + " " + figure + " " + printf_string("%.4g", before) + " -> " + printf_string("%.4g", now) +
         (worse ? " (worse)" : " (better)");
}

bool ScoreComparison::regressed() const {
  for (const auto& c : changes)
    if (c.worse) return true;
  return false;
}

ScoreComparison compare_scoreboards(const Scoreboard& before, const Scoreboard& now) {
  ScoreComparison out;
  if (before.model != now.model)
    out.unmatched.push_back("the baseline scoreboard is of " + before.model + ", this run of " + now.model);
  const ScoreRow& b0 = before.rows.at(0);
  const ScoreRow& n0 = now.rows.at(0);
  auto add = [&](const std::string& row, const std::string& figure, double was, double is, bool higher_is_better) {
    out.changes.push_back({row, figure, was, is, higher_is_better ? is < was : is > was});
  };
  // A speed figure: moved when beyond 3 standard errors of the difference and 5 %.
  auto speed = [&](const std::string& row, const std::string& figure, double was, double was_se, double is,
                   double is_se) {
    if (was <= 0 || is <= 0) return;
    const double diff = is - was, se = std::sqrt(was_se * was_se + is_se * is_se);
    if (std::fabs(diff) > 3 * se && std::fabs(diff) > 0.05 * was) add(row, figure, was, is, true);
  };
  // A ratio's relative standard error from its two means'.
  auto ratio_se = [](const Measured& a, const Measured& base) {
    if (a.mean <= 0 || base.mean <= 0) return 0.0;
    const double ra = standard_error(a) / a.mean, rb = standard_error(base) / base.mean;
    return (a.mean / base.mean) * std::sqrt(ra * ra + rb * rb);
  };
  for (const ScoreRow& n : now.rows) {
    const ScoreRow* b = nullptr;
    for (const ScoreRow& r : before.rows)
      if (r.label == n.label) b = &r;
    if (!b) {
      out.unmatched.push_back(n.label + ": not in the baseline scoreboard");
      continue;
    }
    if (!n.unsupported.empty() || !b->unsupported.empty()) continue;
    if (&n == &n0) {
      speed(n.label, "pp t/s", b->pp_ts.mean, standard_error(b->pp_ts), n.pp_ts.mean, standard_error(n.pp_ts));
      speed(n.label, "tg t/s", b->tg_ts.mean, standard_error(b->tg_ts), n.tg_ts.mean, standard_error(n.tg_ts));
    } else {
      speed(n.label, "pp ratio", b->pp_ts.mean / b0.pp_ts.mean, ratio_se(b->pp_ts, b0.pp_ts),
            n.pp_ts.mean / n0.pp_ts.mean, ratio_se(n.pp_ts, n0.pp_ts));
      speed(n.label, "tg ratio", b->tg_ts.mean / b0.tg_ts.mean, ratio_se(b->tg_ts, b0.tg_ts),
            n.tg_ts.mean / n0.tg_ts.mean, ratio_se(n.tg_ts, n0.tg_ts));
    }
    if (b->peak_rss_bytes > 0 && std::fabs(n.peak_rss_bytes - b->peak_rss_bytes) > 0.05 * b->peak_rss_bytes)
      add(n.label, "peak RSS bytes", b->peak_rss_bytes, n.peak_rss_bytes, false);
    if (b->ppl && n.ppl && std::fabs(*n.ppl - *b->ppl) > 0.005 * *b->ppl) add(n.label, "PPL", *b->ppl, *n.ppl, false);
    if (b->kld_mean && n.kld_mean && std::fabs(*n.kld_mean - *b->kld_mean) > std::max(1e-4, 0.1 * *b->kld_mean))
      add(n.label, "mean KLD", *b->kld_mean, *n.kld_mean, false);
    if (b->top1_agree && n.top1_agree && std::fabs(*n.top1_agree - *b->top1_agree) > 0.01)
      add(n.label, "top-1 agreement", *b->top1_agree, *n.top1_agree, true);
  }
  for (const ScoreRow& b : before.rows) {
    bool found = false;
    for (const ScoreRow& n : now.rows) found = found || n.label == b.label;
    if (!found) out.unmatched.push_back(b.label + ": in the baseline scoreboard, not in this run");
  }
  return out;
}

}  // namespace kestrel
