#include "runtime/accuracy_guard.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "platform/cpu.h"
#include "runtime/tune_profile.h"

namespace kestrel {

bool is_lossy(const SwitchSetting& s) {
  const SwitchSpec& spec = find_switch(s.name);
  if (spec.rounding_only && spec.rounding_only(s.value)) return false;
  const SwitchEffect e = spec.effect(s.value);
  return e == SwitchEffect::Logits || e == SwitchEffect::Thins || e == SwitchEffect::Evicts;
}

namespace {

// The measurement of `lossy`, or why it cannot run (an error it threw).
struct Attempt {
  std::optional<AccuracyFigures> figures;
  std::string error;
};

Attempt attempt(const MeasureAccuracyFn& measure, std::span<const SwitchSetting> lossy) {
  try {
    return {measure(lossy), ""};
  } catch (const Error& e) {
    return {std::nullopt, e.what()};
  }
}

}  // namespace

GuardOutcome decide_switches(std::span<const SwitchSetting> settings, const AccuracyBudget& budget,
                             const MeasureAccuracyFn& measure) {
  GuardOutcome out;
  std::vector<SwitchSetting> lossy;
  for (const auto& s : settings)
    if (is_lossy(s)) lossy.push_back(s);
  out.any_lossy = !lossy.empty();
  const std::string head = "accuracy guard (" + describe(budget) + "): ";
  if (lossy.empty()) {
    out.kept.assign(settings.begin(), settings.end());
    out.log.push_back(head + "no lossy switch is on: nothing to measure");
    return out;
  }

  // Each alone. One that cannot run alone (it needs a partner) is judged together.
  std::vector<SwitchSetting> left, over_alone;
  std::vector<std::optional<AccuracyFigures>> alone;
  for (const auto& s : lossy) {
    const std::vector<SwitchSetting> one{s};
    Attempt a = attempt(measure, one);
    GuardStep step{one, a.figures, ""};
    if (!a.figures) {
      step.note = "not measured alone (" + a.error + "): judged with the others";
      out.log.push_back(head + s.label() + " " + step.note);
      left.push_back(s);
      alone.push_back(std::nullopt);
    } else if (const std::string why = over_budget(*a.figures, budget); !why.empty()) {
      step.note = "over budget: " + why;
      out.log.push_back(head + "turned off " + s.label() + ": " + describe(*a.figures) + ", over budget (" + why + ")");
      out.dropped.push_back(s);
      over_alone.push_back(s);
    } else {
      step.note = "within budget";
      out.log.push_back(head + s.label() + " alone: " + describe(*a.figures) + ", within budget");
      left.push_back(s);
      alone.push_back(a.figures);
    }
    out.steps.push_back(std::move(step));
  }

  // Together: the single measurement stands when only one is left and it was measured.
  while (!left.empty()) {
    if (left.size() == 1 && alone[0]) {
      out.final_figures = alone[0];
      break;
    }
    Attempt a = attempt(measure, left);
    GuardStep step{left, a.figures, ""};
    size_t drop = left.size();
    std::string why;
    if (!a.figures) {
      // A setting that needs a partner that was turned off: give it up too.
      for (size_t i = 0; i < left.size() && drop == left.size(); ++i)
        if (!alone[i]) drop = i;
      if (drop == left.size()) drop = left.size() - 1;
      why = "cannot run without what was turned off (" + a.error + ")";
      step.note = why;
    } else if (const std::string over = over_budget(*a.figures, budget); !over.empty()) {
      // Give up the one that used most of the budget alone (unmeasured ones first).
      double worst = -1.0;
      for (size_t i = 0; i < left.size(); ++i) {
        const double use = alone[i] ? budget_use(*alone[i], budget) : INFINITY;
        if (use > worst) worst = use, drop = i;
      }
      why = "together " + describe(*a.figures) + ", over budget (" + over + ")";
      step.note = "over budget: " + over;
    } else {
      step.note = "within budget";
      out.log.push_back(head + settings_label(left) + " together: " + describe(*a.figures) + ", within budget");
      out.final_figures = a.figures;
      out.steps.push_back(std::move(step));
      break;
    }
    out.steps.push_back(std::move(step));
    out.log.push_back(head + "turned off " + left[drop].label() + ": " + why);
    out.dropped.push_back(left[drop]);
    left.erase(left.begin() + static_cast<std::ptrdiff_t>(drop));
    alone.erase(alone.begin() + static_cast<std::ptrdiff_t>(drop));
  }

  // A setting over the budget alone may be within it next to those kept: attn=sage
  // smooths the keys that a low-bit K type cannot hold alone (Qwen2.5-1.5B:
  // kv_k=q5_1 alone KLD 3.46; with attn=sage 0.0057). Each is tried once with them.
  if (!left.empty()) {
    for (const SwitchSetting& d : over_alone) {
      std::vector<SwitchSetting> with;  // in the order given (the measurement cache's key)
      for (const SwitchSetting& s : lossy)
        if (s == d || std::find(left.begin(), left.end(), s) != left.end()) with.push_back(s);
      Attempt a = attempt(measure, with);
      const std::string over = a.figures ? over_budget(*a.figures, budget) : "";
      if (!a.figures || !over.empty()) {
        const std::string why = a.figures ? "over budget: " + over : a.error;
        out.steps.push_back(GuardStep{with, a.figures, why});
        out.log.push_back(head + d.label() + " with " + settings_label(left) + ": " +
                          (a.figures ? describe(*a.figures) + ", " : "") + why + ": stays off");
        continue;
      }
      out.steps.push_back(GuardStep{with, a.figures, "within budget"});
      out.log.push_back(head + "kept " + d.label() + ": over budget alone, but with " + settings_label(left) + " " +
                        describe(*a.figures) + ", within budget");
      left = std::move(with);
      out.final_figures = a.figures;
      std::erase(out.dropped, d);
    }
  }

  for (const auto& s : settings)
    if (std::find(out.dropped.begin(), out.dropped.end(), s) == out.dropped.end()) out.kept.push_back(s);
  if (left.empty())
    out.log.push_back(head + "no lossy switch meets the budget: running the exact path for them (turned off: " +
                      settings_label(out.dropped) + ")");
  else
    out.log.push_back(head + "running with " + settings_label(left) +
                      (out.dropped.empty() ? "" : "; turned off " + settings_label(out.dropped)));
  return out;
}

std::optional<SwitchSetting> next_to_turn_off(const GuardOutcome& outcome, std::span<const SwitchSetting> running,
                                              const AccuracyBudget& budget) {
  std::optional<SwitchSetting> pick;
  double worst = -1.0;
  for (const auto& s : running) {
    if (!is_lossy(s) || find_switch(s.name).effect(s.value) == SwitchEffect::Evicts) continue;
    double use = INFINITY;
    for (const auto& step : outcome.steps)
      if (step.settings.size() == 1 && step.settings[0] == s && step.figures) use = budget_use(*step.figures, budget);
    if (use > worst) worst = use, pick = s;
  }
  return pick;
}

std::string guard_fingerprint(const std::string& model_path, std::span<const std::string> sidecars,
                              std::span<const int32_t> tokens, const ProbeOptions& o, const std::string& context) {
  Fnv1a h;
  auto str = [&](const std::string& s) {
    h.u64(s.size());
    h.bytes(s.data(), s.size());
  };
  auto file = [&](const std::string& path) {
    struct stat st {};
    std::error_code ec;
    const auto canonical = std::filesystem::weakly_canonical(path, ec);
    str(ec ? path : canonical.string());
    if (::stat(path.c_str(), &st) == 0) {
      h.u64(static_cast<uint64_t>(st.st_size));
      h.u64(static_cast<uint64_t>(st.st_mtim.tv_sec));
      h.u64(static_cast<uint64_t>(st.st_mtim.tv_nsec));
    }
  };
  file(model_path);
  for (const std::string& path : sidecars) file(path);
  file("/proc/self/exe");  // another build may compute other figures
  str(cpu_description());
  h.bytes(tokens.data(), tokens.size_bytes());
  h.u64(static_cast<uint64_t>(o.n_prompt));
  h.u64(static_cast<uint64_t>(o.n_positions));
  str(context);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h.h));
  return buf;
}

std::string default_guard_cache_dir() {
  if (const char* c = std::getenv("KESTREL_CACHE"); c && *c) return std::string(c) + "/guard";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/kestrel/guard";
}

AccuracyCache::AccuracyCache(std::string dir, std::string fingerprint) : fingerprint_(std::move(fingerprint)) {
  if (dir.empty()) return;
  path_ = (std::filesystem::path(dir) / (fingerprint_ + ".json")).string();
  std::ifstream in(path_);
  if (!in) return;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.at("fingerprint").get<std::string>() != fingerprint_) return;
    for (const auto& [label, f] : j.at("entries").items()) {
      AccuracyFigures a;
      a.kld = f.at("kld").get<double>();
      a.top1 = f.at("top1").get<double>();
      a.ppl_increase = f.at("ppl_increase").get<double>();
      a.positions = f.at("positions").get<int>();
      entries_.emplace_back(label, a);
    }
  } catch (const std::exception&) {
    entries_.clear();  // unreadable: measured again and rewritten
  }
}

std::optional<AccuracyFigures> AccuracyCache::find(const std::string& label) const {
  for (const auto& [l, f] : entries_)
    if (l == label) return f;
  return std::nullopt;
}

void AccuracyCache::store(const std::string& label, const AccuracyFigures& f) {
  entries_.emplace_back(label, f);
  if (path_.empty()) return;
  nlohmann::json j;
  j["fingerprint"] = fingerprint_;
  j["cpu"] = cpu_description();
  for (const auto& [l, a] : entries_)
    j["entries"][l] = {{"kld", a.kld}, {"top1", a.top1}, {"ppl_increase", a.ppl_increase}, {"positions", a.positions}};
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  const std::string tmp = path_ + ".tmp";
  std::ofstream(tmp) << j.dump(1) << "\n";
  std::filesystem::rename(tmp, path_, ec);  // a cache that cannot be written is only slower
}

GuardOutcome guard_switches(const Model& model, std::span<const SwitchSetting> settings,
                            const std::function<EngineConfig(std::span<const SwitchSetting>)>& make_config,
                            const GuardOptions& o, const std::function<void(const std::string&)>& progress) {
  std::vector<SwitchSetting> lossless;
  bool any_lossy = false;
  for (const auto& s : settings) {
    if (is_lossy(s))
      any_lossy = true;
    else
      lossless.push_back(s);
  }
  if (!any_lossy) return decide_switches(settings, o.budget, {});

  const EngineConfig exact = make_config(lossless);
  const std::vector<int32_t> tokens =
      probe_tokens(model, o.text.empty() ? probe_calibration_text() : std::string_view(o.text), o.probe);
  const std::string context = settings_label(lossless) + "|" + exact.kv_codebook + "|" + exact.kv_codebook_v + "|" +
                              exact.teal.file + "|" + std::to_string(exact.cq_window) + "|" +
                              std::to_string(exact.teal.max_density);
  // The files the switches read, resolved as a tune profile resolves them.
  AccuracyCache cache(o.cache_dir, guard_fingerprint(o.model_path, config_sidecars(make_config(settings), o.model_path),
                                                     tokens, o.probe, context));
  std::optional<AccuracyProbe> probe;  // the exact run, made when a measurement is not in the cache
  auto measure = [&](std::span<const SwitchSetting> lossy) {
    const std::string label = settings_label(lossy);
    if (auto hit = cache.find(label)) {
      if (progress) progress("accuracy guard: " + label + ": measured before (" + cache.path() + ")");
      return *hit;
    }
    std::vector<SwitchSetting> all = lossless;
    all.insert(all.end(), lossy.begin(), lossy.end());
    const EngineConfig config = make_config(all);  // throws for a pair without kernels
    check_engine_config(config);
    if (!probe) {
      if (progress) progress("accuracy guard: the exact path on " + std::to_string(tokens.size()) + " tokens");
      probe.emplace(model, tokens, exact, o.probe);
    }
    if (progress) progress("accuracy guard: measuring " + label);
    const AccuracyFigures f = probe->compare(config);
    cache.store(label, f);
    return f;
  };
  return decide_switches(settings, o.budget, measure);
}

}  // namespace kestrel
