#include "runtime/tune.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/printf.h"
#include "runtime/accuracy_guard.h"

namespace kestrel {
namespace {

const auto num = printf_string;

}  // namespace

std::string TunePoint::label() const { return settings.empty() ? "baseline" : settings_label(settings); }

std::vector<SwitchSetting> tune_candidates() {
  std::vector<SwitchSetting> out;
  for (const SwitchSpec& spec : switch_specs()) {
    for (const std::string& v : spec.values) {  // integer-valued switches (no values) are not searched
      const SwitchSetting s{spec.name, v};
      if (is_lossy(s) && spec.unsupported(v).empty()) out.push_back(s);
    }
  }
  return out;
}

void mark_pareto(std::vector<TunePoint>& points) {
  for (auto& p : points) {
    p.pareto = p.within;
    if (!p.within) continue;
    for (const auto& q : points) {
      if (&q == &p || !q.within) continue;
      const bool no_worse = q.speedup >= p.speedup && q.accuracy.kld <= p.accuracy.kld;
      const bool better = q.speedup > p.speedup || q.accuracy.kld < p.accuracy.kld;
      if (no_worse && better) p.pareto = false;
    }
  }
}

TuneResult run_tune(const Model& model, const BenchModelInfo& info,
                    const std::function<EngineConfig(std::span<const SwitchSetting>)>& make_config,
                    const TuneOptions& o, const TuneProgressFn& progress) {
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };
  auto with = [&](std::span<const SwitchSetting> lossy) {
    std::vector<SwitchSetting> all = o.lossless;
    all.insert(all.end(), lossy.begin(), lossy.end());
    return all;
  };
  TuneResult r;
  r.min_gain = o.min_gain;
  r.settings = "end-to-end request of " + std::to_string(o.n_prompt) + " prompt + " + std::to_string(o.n_gen) +
               " generated tokens (generation timed after the prompt), " + std::to_string(o.reps) +
               " interleaved reps; accuracy: a " + std::to_string(o.probe.n_prompt) + "-token prompt and " +
               std::to_string(o.probe.n_positions) +
               " teacher-forced decode steps against the exact path; memory: weights + KV at " +
               std::to_string(o.memory_ctx) + " tokens";

  const std::vector<int32_t> tokens =
      probe_tokens(model, o.text.empty() ? probe_calibration_text() : std::string_view(o.text), o.probe);
  say("tune: the exact path on " + std::to_string(tokens.size()) + " tokens");
  const EngineConfig exact = make_config(o.lossless);
  const AccuracyProbe probe(model, tokens, exact, o.probe);

  TunePoint base;
  base.accuracy.positions = o.probe.n_positions;
  base.memory_bytes = memory_at_context(model, exact, o.memory_ctx);
  r.points.push_back(base);

  // Accuracy of every candidate alone.
  const std::vector<SwitchSetting> candidates = o.candidates.empty() ? tune_candidates() : o.candidates;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const std::vector<SwitchSetting> one{candidates[i]};
    say("tune: accuracy " + std::to_string(i + 1) + "/" + std::to_string(candidates.size()) + " " +
        candidates[i].label());
    try {
      const EngineConfig c = make_config(with(one));
      check_engine_config(c);
      TunePoint p;
      p.settings = one;
      p.accuracy = probe.compare(c);
      p.within = over_budget(p.accuracy, o.budget).empty();
      p.memory_bytes = memory_at_context(model, c, o.memory_ctx);
      r.points.push_back(p);
    } catch (const Error& e) {
      r.skipped.push_back(candidates[i].label() + ": " + e.what());
      say("tune: skipped " + r.skipped.back());
    }
  }

  // Speed: the baseline and the given points, interleaved, pp and tg.
  auto time_points = [&](const std::vector<size_t>& idx) {
    std::vector<std::vector<double>> pp(idx.size()), tg(idx.size());
    for (int rep = 0; rep < o.reps; ++rep) {
      for (size_t k = 0; k < idx.size(); ++k) {
        TunePoint& p = r.points[idx[k]];
        say("tune: speed rep " + std::to_string(rep + 1) + "/" + std::to_string(o.reps) + " " + p.label());
        for (int which = 0; which < 2; ++which) {
          BenchCase c;
          (which == 0 ? c.n_prompt : c.n_gen) = which == 0 ? o.n_prompt : o.n_gen;
          // Generation follows the request's prompt: timed at that depth (KV types and eviction show there).
          if (which == 1) c.n_depth = o.n_prompt;
          c.reps = 1;
          c.warmup = rep == 0;
          c.engine = make_config(with(p.settings));
          (which == 0 ? pp : tg)[k].push_back(run_bench(model, info, c).avg_ts);
        }
      }
    }
    for (size_t k = 0; k < idx.size(); ++k) {
      r.points[idx[k]].pp_ts = measure(pp[k]);
      r.points[idx[k]].tg_ts = measure(tg[k]);
    }
    // Each point against the baseline timed in the same rounds (idx[0]).
    // The request's time and its relative standard error (first order, from the means' spreads).
    auto request = [&](const TunePoint& p, double* rel_se) {
      const double tp = o.n_prompt / p.pp_ts.mean, tg = o.n_gen / p.tg_ts.mean;
      const double sp = tp * p.pp_ts.stddev / p.pp_ts.mean / std::sqrt(std::max(1, p.pp_ts.n));
      const double sg = tg * p.tg_ts.stddev / p.tg_ts.mean / std::sqrt(std::max(1, p.tg_ts.n));
      *rel_se = std::sqrt(sp * sp + sg * sg) / (tp + tg);
      return tp + tg;
    };
    double base_rel = 0;
    const double base_s = request(r.points[idx[0]], &base_rel);
    for (size_t k = 1; k < idx.size(); ++k) {
      TunePoint& p = r.points[idx[k]];
      double rel = 0;
      p.speedup = base_s / request(p, &rel);
      p.speedup_se = p.speedup * std::sqrt(rel * rel + base_rel * base_rel);
    }
  };
  std::vector<size_t> timed = {0};
  for (size_t i = 1; i < r.points.size(); ++i)
    if (r.points[i].within) timed.push_back(i);
  time_points(timed);

  // Measures a combination's accuracy and memory and adds it to the points;
  // false when the configuration is refused (listed in skipped).
  auto add_combination = [&](TunePoint p) {
    p.combination = true;
    say("tune: trying " + p.label());
    try {
      const EngineConfig c = make_config(with(p.settings));
      check_engine_config(c);
      p.accuracy = probe.compare(c);
      p.within = over_budget(p.accuracy, o.budget).empty();
      p.memory_bytes = memory_at_context(model, c, o.memory_ctx);
    } catch (const Error& e) {
      r.skipped.push_back(p.label() + ": " + e.what());
      return false;
    }
    r.points.push_back(p);
    return true;
  };

  // Greedy: the faster singles in order, each kept if the combination stays
  // within budget and is faster than the best so far.
  std::vector<size_t> order(timed.begin() + 1, timed.end());
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return r.points[a].speedup > r.points[b].speedup; });
  auto faster = [&](const TunePoint& p) { return p.speedup > 1.0 + std::max(o.min_gain, 2 * p.speedup_se); };
  std::optional<size_t> best;
  for (size_t i : order)
    if (faster(r.points[i])) {
      best = i;
      break;
    }
  // A combination within budget: timed against the baseline and the best so
  // far, interleaved; it becomes the best when faster than both by more than
  // the noise.
  auto keep_if_faster = [&](size_t me) {
    if (!best) {
      time_points({0, me});
      if (faster(r.points[me])) best = me;
      return;
    }
    time_points({0, *best, me});
    const TunePoint &c = r.points[me], &b = r.points[*best];
    const double se = std::sqrt(c.speedup_se * c.speedup_se + b.speedup_se * b.speedup_se);
    if (c.speedup > b.speedup * (1.0 + o.min_gain) && c.speedup - b.speedup > 2 * se) best = me;
  };
  const size_t singles_end = r.points.size();
  if (best) {
    for (size_t i : order) {
      if (i == *best || !faster(r.points[i])) continue;
      const SwitchSetting& add = r.points[i].settings[0];
      const auto& cur = r.points[*best].settings;
      if (std::any_of(cur.begin(), cur.end(), [&](const SwitchSetting& s) { return share_a_slot(s, add); })) continue;
      TunePoint p;
      p.settings = cur;
      p.settings.push_back(add);
      if (!add_combination(p) || !r.points.back().within) continue;
      keep_if_faster(r.points.size() - 1);
    }
  }

  // Second chance: over-budget values (largest memory saving first) with the
  // within-budget values of other slots (most accurate first).
  std::vector<size_t> over, within_order;
  for (size_t i = 1; i < singles_end; ++i) (r.points[i].within ? within_order : over).push_back(i);
  std::stable_sort(over.begin(), over.end(),
                   [&](size_t a, size_t b) { return r.points[a].memory_bytes < r.points[b].memory_bytes; });
  std::stable_sort(within_order.begin(), within_order.end(),
                   [&](size_t a, size_t b) { return r.points[a].accuracy.kld < r.points[b].accuracy.kld; });
  int pairs = 0;
  for (size_t x : over) {
    for (size_t y : within_order) {
      if (pairs >= o.max_pairs) break;
      const SwitchSetting &sx = r.points[x].settings[0], &sy = r.points[y].settings[0];
      if (share_a_slot(sx, sy)) continue;
      ++pairs;
      TunePoint p;
      p.settings = {sy, sx};
      p.pair = true;
      if (!add_combination(p) || !r.points.back().within) continue;
      say("tune: " + sx.label() + " is over the budget alone but within it with " + sy.label());
      keep_if_faster(r.points.size() - 1);
    }
  }
  r.best = best;
  mark_pareto(r.points);
  return r;
}

std::string tune_markdown(const TuneResult& r, const std::string& model_name, const AccuracyBudget& budget) {
  std::ostringstream o;
  o << "### kestrel tune: " << model_name << " (" << describe(budget) << ")\n\n" << r.settings << ".\n\n";
  o << "| configuration | speed-up | pp t/s | tg t/s | memory | KLD | top-1 | PPL | budget | front |\n"
    << "|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n";
  const double base_mem = r.points.empty() ? 0 : r.points[0].memory_bytes;
  for (size_t i = 0; i < r.points.size(); ++i) {
    const TunePoint& p = r.points[i];
    const bool timed = p.tg_ts.n > 0;
    const std::string label = p.label() + (p.pair ? " (pair)" : "");
    o << "| " << (r.best && *r.best == i ? "**" + label + "**" : label) << " | "
      << (timed ? num("%.3fx", p.speedup) + (p.speedup_se > 0 ? num(" ± %.3f", p.speedup_se) : "") : "-") << " | "
      << (timed ? num("%.1f ± %.1f", p.pp_ts.mean, p.pp_ts.stddev) : "-") << " | "
      << (timed ? num("%.2f ± %.2f", p.tg_ts.mean, p.tg_ts.stddev) : "-") << " | "
      << num("%.0f MiB (%.2fx)", p.memory_bytes / 1048576.0, base_mem > 0 ? p.memory_bytes / base_mem : 0.0) << " | "
      << num("%.4f", p.accuracy.kld) << " | " << num("%.1f %%", 100 * p.accuracy.top1) << " | "
      << num("%+.2f %%", 100 * p.accuracy.ppl_increase) << " | "
      << (p.within ? "within" : "over: " + over_budget(p.accuracy, budget)) << " | " << (p.pareto ? "yes" : "")
      << " |\n";
  }
  o << "\n";
  if (r.best)
    o << "Fastest within budget: **" << r.points[*r.best].label() << "**, " << num("%.3fx", r.points[*r.best].speedup)
      << " end to end, " << describe(r.points[*r.best].accuracy) << ".\n";
  else
    o << "No lossy switch is faster than the baseline beyond its noise (2 standard errors and "
      << num("%.0f %%", 100 * r.min_gain) << ") within the budget on this machine: the exact path is the profile.\n";
  for (const auto& s : r.skipped) o << "\n- skipped " << s;
  if (!r.skipped.empty()) o << "\n";
  return o.str();
}

std::string tune_svg(const TuneResult& r, const std::string& model_name, const AccuracyBudget& budget) {
  const int width = 760, height = 480, left = 70, right = 200, top = 50, bottom = 60;
  const int pw = width - left - right, ph = height - top - bottom;
  double max_kld = 1e-4, min_s = 1.0, max_s = 1.0;
  for (const auto& p : r.points) {
    max_kld = std::max(max_kld, p.accuracy.kld);
    if (p.tg_ts.n > 0) min_s = std::min(min_s, p.speedup), max_s = std::max(max_s, p.speedup);
  }
  if (budget.max_kld) max_kld = std::max(max_kld, *budget.max_kld);
  // KLD on a log axis from max/1e4 (zero sits on the axis).
  const double lo = std::log10(max_kld) - 4, hi = std::log10(max_kld) + 0.1;
  auto x_of = [&](double kld) {
    const double l = kld > 0 ? std::max(lo, std::log10(kld)) : lo;
    return left + (l - lo) / (hi - lo) * pw;
  };
  const double s_lo = std::min(0.9, min_s - 0.05), s_hi = max_s + 0.05;
  auto y_of = [&](double s) { return top + (s_hi - s) / (s_hi - s_lo) * ph; };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << left << "\" y=\"22\" font-size=\"14\">kestrel tune: " << xml_escape(model_name)
    << " — end-to-end speed-up against KLD (" << xml_escape(describe(budget)) << ")</text>\n";
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (int d = static_cast<int>(std::ceil(lo)); d <= static_cast<int>(std::floor(hi)); ++d) {
    const double x = x_of(std::pow(10.0, d));
    o << "<line x1=\"" << x << "\" y1=\"" << top << "\" x2=\"" << x << "\" y2=\"" << top + ph
      << "\" stroke=\"#eee\"/><text x=\"" << x << "\" y=\"" << top + ph + 16 << "\" text-anchor=\"middle\">1e" << d
      << "</text>\n";
  }
  for (double s = std::ceil(s_lo * 10) / 10; s <= s_hi; s += 0.1) {
    o << "<line x1=\"" << left << "\" y1=\"" << y_of(s) << "\" x2=\"" << left + pw << "\" y2=\"" << y_of(s)
      << "\" stroke=\"#eee\"/><text x=\"" << left - 6 << "\" y=\"" << y_of(s) + 4 << "\" text-anchor=\"end\">"
      << num("%.1fx", s) << "</text>\n";
  }
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << height - 20
    << "\" text-anchor=\"middle\">mean KLD against the exact path (nats, log scale; 0 on the axis)</text>\n";
  if (budget.max_kld) {
    const double x = x_of(*budget.max_kld);
    o << "<line x1=\"" << x << "\" y1=\"" << top << "\" x2=\"" << x << "\" y2=\"" << top + ph
      << "\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/><text x=\"" << x + 4 << "\" y=\"" << top + 12
      << "\" fill=\"#c33\">budget</text>\n";
  }
  // The front, joined in KLD order.
  std::vector<const TunePoint*> front;
  for (const auto& p : r.points)
    if (p.pareto && p.tg_ts.n > 0) front.push_back(&p);
  std::sort(front.begin(), front.end(), [](auto* a, auto* b) { return a->accuracy.kld < b->accuracy.kld; });
  if (front.size() > 1) {
    o << "<polyline fill=\"none\" stroke=\"#2a7\" stroke-width=\"1.5\" points=\"";
    for (auto* p : front) o << x_of(p->accuracy.kld) << "," << y_of(p->speedup) << " ";
    o << "\"/>\n";
  }
  int legend = 0;
  for (size_t i = 0; i < r.points.size(); ++i) {
    const TunePoint& p = r.points[i];
    if (p.tg_ts.n == 0) continue;  // over budget alone: not timed (listed in the table)
    const std::string color = r.best && *r.best == i ? "#d60" : p.pareto ? "#2a7" : "#57a";
    o << "<circle cx=\"" << x_of(p.accuracy.kld) << "\" cy=\"" << y_of(p.speedup) << "\" r=\"4\" fill=\"" << color
      << "\"><title>" << xml_escape(p.label()) << "</title></circle>\n";
    o << "<text x=\"" << x_of(p.accuracy.kld) + 6 << "\" y=\"" << y_of(p.speedup) - 5 << "\" font-size=\"9\">" << legend
      << "</text>\n";
    o << "<text x=\"" << left + pw + 10 << "\" y=\"" << top + 12 * legend << "\" font-size=\"9\" fill=\"" << color
      << "\">" << legend << ": " << xml_escape(p.label()) << "</text>\n";
    ++legend;
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace kestrel
