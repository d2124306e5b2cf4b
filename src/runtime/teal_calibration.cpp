#include "runtime/teal_calibration.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "runtime/engine_core.h"

namespace kestrel {
namespace {

// The inputs a layer's projections read: Q/K/V share one, Gate/Up another.
enum Input { kAttnIn, kOIn, kMlpIn, kDownIn, kInputs };
constexpr Input input_of(Projection p) {
  switch (p) {
    case Projection::Q: case Projection::K: case Projection::V: return kAttnIn;
    case Projection::O: return kOIn;
    case Projection::Gate: case Projection::Up: return kMlpIn;
    case Projection::Down: return kDownIn;
  }
  return kAttnIn;
}

// Histograms of every (layer, input), fitted and held out, and the block
// inputs of the first positions (the greedy search's data).
class TealStatistics final : public ProjectionObserver {
 public:
  TealStatistics(int n_layer, int64_t n_embd, int64_t holdout_from, int64_t block_tokens)
      : n_embd_(n_embd), holdout_from_(holdout_from), block_tokens_(block_tokens),
        fit_(static_cast<size_t>(n_layer) * kInputs), held_(fit_.size()),
        attn_in_(n_layer, std::vector<float>(static_cast<size_t>(block_tokens * n_embd))),
        mlp_in_(attn_in_) {}

  void observe(int layer, Projection first, const Batch& b, const float* x, int64_t cols) override {
    const Input in = input_of(first);
    for (int64_t t = 0; t < b.size(); ++t) {
      const float* row = x + t * cols;
      const int64_t pos = b.pos[t];
      (pos < holdout_from_ ? fit_ : held_)[static_cast<size_t>(layer) * kInputs + in].add(row, cols);
      if (pos >= block_tokens_ || (in != kAttnIn && in != kMlpIn)) continue;
      std::vector<float>& to = (in == kAttnIn ? attn_in_ : mlp_in_)[static_cast<size_t>(layer)];
      std::copy(row, row + cols, to.begin() + pos * n_embd_);
    }
  }

  const AbsHistogram& fit(int layer, Projection p) const { return fit_[index(layer, p)]; }
  const AbsHistogram& held(int layer, Projection p) const { return held_[index(layer, p)]; }
  const std::vector<float>& block_input(int layer, Model::Block b) const {
    return (b == Model::Block::Attention ? attn_in_ : mlp_in_)[static_cast<size_t>(layer)];
  }

 private:
  static size_t index(int layer, Projection p) { return static_cast<size_t>(layer) * kInputs + input_of(p); }
  int64_t n_embd_, holdout_from_, block_tokens_;
  std::vector<AbsHistogram> fit_, held_;
  std::vector<std::vector<float>> attn_in_, mlp_in_;
};

// Weight elements of each projection of a layer (what dropping an input saves).
std::vector<double> projection_weights(const ModelConfig& c) {
  const double E = c.n_embd, q = double{1} * c.n_head * c.head_dim, kv = double{1} * c.n_kv_head * c.head_dim,
               ff = c.n_ff;
  return {E * q, E * kv, E * kv, q * E, E * ff, E * ff, ff * E};
}

// The greedy search of one block of one layer.
class BlockSearch {
 public:
  BlockSearch(EngineCore& core, const TealStatistics& stats, int layer, Model::Block block,
              std::vector<Projection> parts, const std::vector<double>& weights, int64_t tokens)
      : core_(core), stats_(stats), layer_(layer), block_(block), parts_(std::move(parts)), weights_(weights) {
    const int64_t E = core.model().config().n_embd;
    for (int64_t t = 0; t < tokens; ++t) batch_.add(0, static_cast<int32_t>(t), 0, false);
    // The attention block's error counts where a query has context to lose.
    first_scored_ = block == Model::Block::Attention ? tokens - tokens / 4 : 0;
    dense_.resize(static_cast<size_t>(tokens * E));
    out_.resize(dense_.size());
    core_.run_block(block_, layer_, batch_, stats_.block_input(layer_, block_).data(), dense_.data(), nullptr);
    for (size_t i = static_cast<size_t>(first_scored_ * E); i < dense_.size(); ++i) norm_ += double{dense_[i]} * dense_[i];
    plan_.n_layer = core.model().config().n_layer;
    plan_.threshold.assign(static_cast<size_t>(plan_.n_layer) * kProjections, 0.0f);
    plan_.all_rows = true;
    for (Projection p : parts_) total_weight_ += weights_[static_cast<size_t>(p)];
  }

  // Runs the search to the last level; returns, per level, the sparsity of
  // each projection ([kProjections], 0 outside this block) and the block's
  // relative output error there.
  void run(const std::vector<double>& levels, double step, std::vector<std::vector<float>>& alloc,
           std::vector<double>& errors) {
    std::vector<double> s(kProjections, 0.0);
    double reached = 0.0;  // the block's weighted sparsity
    size_t next = 0;
    while (next < levels.size()) {
      const double target = std::min(levels.back(), reached + step);
      // Candidates: raise one projection so the block gains `target - reached`.
      double best_err = std::numeric_limits<double>::infinity();
      int best = -1;
      double best_s = 0.0;
      for (size_t i = 0; i < parts_.size(); ++i) {
        const auto p = static_cast<size_t>(parts_[i]);
        const double raised = s[p] + (target - reached) * total_weight_ / weights_[p];
        if (raised > kMaxSparsity) continue;
        std::vector<double> trial = s;
        trial[p] = raised;
        const double err = error(trial);
        if (err < best_err) best_err = err, best = static_cast<int>(i), best_s = raised;
      }
      if (best < 0) fail("teal calibration: layer ", layer_, " cannot reach sparsity ", levels[next]);
      s[static_cast<size_t>(parts_[static_cast<size_t>(best)])] = best_s;
      reached = target;
      while (next < levels.size() && reached >= levels[next] - 1e-9) {
        // Overshoot is impossible by construction when a level is a step end;
        // otherwise scale the last step back to land on the level exactly.
        std::vector<double> at = s;
        if (reached > levels[next] + 1e-9) {
          const auto p = static_cast<size_t>(parts_[static_cast<size_t>(best)]);
          at[p] -= (reached - levels[next]) * total_weight_ / weights_[p];
        }
        alloc[next].resize(kProjections, 0.0f);
        for (Projection p : parts_) alloc[next][static_cast<size_t>(p)] = static_cast<float>(at[static_cast<size_t>(p)]);
        errors[next] = error(at);
        ++next;
      }
    }
  }

 private:
  static constexpr double kMaxSparsity = 0.98;

  double error(const std::vector<double>& s) {
    for (Projection p : parts_)
      plan_.threshold[static_cast<size_t>(layer_) * kProjections + static_cast<size_t>(p)] =
          stats_.fit(layer_, p).quantile(s[static_cast<size_t>(p)]);
    core_.run_block(block_, layer_, batch_, stats_.block_input(layer_, block_).data(), out_.data(), &plan_);
    const int64_t E = core_.model().config().n_embd;
    double e = 0.0;
    for (size_t i = static_cast<size_t>(first_scored_ * E); i < out_.size(); ++i) {
      const double d = double{out_[i]} - dense_[i];
      e += d * d;
    }
    return norm_ > 0.0 ? e / norm_ : e;
  }

  EngineCore& core_;
  const TealStatistics& stats_;
  int layer_;
  Model::Block block_;
  std::vector<Projection> parts_;
  const std::vector<double>& weights_;
  Batch batch_;
  int64_t first_scored_ = 0;
  std::vector<float> dense_, out_;
  double norm_ = 0.0, total_weight_ = 0.0;
  ActivationSparsity plan_;
};

}  // namespace

void AbsHistogram::add(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    int bin = 0;
    if (a > 0.0f) {
      const double l = (std::log2(static_cast<double>(a)) + 32.0) * kPerOctave;
      bin = static_cast<int>(std::clamp(std::floor(l), 0.0, static_cast<double>(kBins - 2))) + 1;
    }
    ++bins_[static_cast<size_t>(bin)];
  }
  total_ += static_cast<uint64_t>(n);
}

// Bin b >= 1 holds |x| in [2^((b-1)/64 - 32), 2^(b/64 - 32)).
float AbsHistogram::quantile(double s) const {
  if (s <= 0.0 || total_ == 0) return 0.0f;
  const double want = s * static_cast<double>(total_);
  double below = static_cast<double>(bins_[0]);
  if (below >= want) return 0.0f;
  for (int b = 1; b < kBins; ++b) {
    const double n = static_cast<double>(bins_[static_cast<size_t>(b)]);
    if (below + n >= want) {
      const double frac = n > 0.0 ? (want - below) / n : 1.0;  // log-linear inside the bin
      return static_cast<float>(std::exp2((b - 1 + frac) / kPerOctave - 32.0));
    }
    below += n;
  }
  return std::numeric_limits<float>::max();
}

double AbsHistogram::share_at_most(float t) const {
  if (total_ == 0) return 0.0;
  if (t <= 0.0f) return static_cast<double>(bins_[0]) / static_cast<double>(total_);
  const double l = (std::log2(static_cast<double>(t)) + 32.0) * kPerOctave;
  const double pos = std::clamp(l, 0.0, static_cast<double>(kBins - 1));
  const int whole = static_cast<int>(std::floor(pos));
  double n = static_cast<double>(bins_[0]);
  for (int b = 1; b <= whole && b < kBins; ++b) n += static_cast<double>(bins_[static_cast<size_t>(b)]);
  if (whole + 1 < kBins) n += (pos - whole) * static_cast<double>(bins_[static_cast<size_t>(whole + 1)]);
  return n / static_cast<double>(total_);
}

TealCalibrationReport calibrate_teal(const Model& model, const std::vector<int32_t>& tokens,
                                     const TealCalibrationOptions& o, TealTables& tables,
                                     const TealProgressFn& progress) {
  using Clock = std::chrono::steady_clock;
  const auto say = [&](const std::string& line) {
    if (progress) progress(line);
  };
  if (!model.thins_projection_inputs())
    fail("teal calibration: ", model.config().arch, " does not thin its projections' inputs yet (llama and qwen2 do)");
  if (o.levels.empty()) fail("teal calibration: no sparsity level given");
  for (size_t i = 0; i < o.levels.size(); ++i) {
    if (!(o.levels[i] > 0.0 && o.levels[i] < 1.0)) fail("teal calibration: sparsity ", o.levels[i], " is not in (0, 1)");
    if (i > 0 && !(o.levels[i] > o.levels[i - 1])) fail("teal calibration: sparsities must be ascending");
  }
  if (!(o.step > 0.0 && o.step <= 0.5)) fail("teal calibration: step ", o.step, " is not in (0, 0.5]");
  const auto n = static_cast<int64_t>(tokens.size());
  if (o.block_tokens < 16) fail("teal calibration: block tokens must be at least 16, got ", o.block_tokens);
  if (n < o.block_tokens + o.block_tokens / 4)
    fail("teal calibration: ", n, " tokens of text; at least ", o.block_tokens + o.block_tokens / 4, " are needed");

  const ModelConfig& c = model.config();
  const int64_t holdout_from = n - n / 5;
  TealStatistics stats(c.n_layer, c.n_embd, holdout_from, o.block_tokens);
  {
    SessionOptions so;
    so.n_ctx = n;
    so.engine.n_threads = o.n_threads;
    Session session(model, so);
    session.set_projection_observer(&stats);
    say("evaluating " + std::to_string(n) + " tokens (the last " + std::to_string(n - holdout_from) +
        " held out)");
    session.append(tokens);
  }

  EngineConfig ec;
  ec.n_threads = o.n_threads;
  EngineCore core(model, ec, model.kv_shape(o.block_tokens, 1));
  const std::vector<double> weights = projection_weights(c);
  const size_t L = o.levels.size();
  tables.levels.assign(o.levels.begin(), o.levels.end());
  tables.thresholds.assign(L * static_cast<size_t>(c.n_layer) * kProjections, 0.0f);
  tables.sparsity.assign(tables.thresholds.size(), 0.0f);

  TealCalibrationReport report;
  report.positions = holdout_from;
  report.heldout_positions = n - holdout_from;
  for (int l = 0; l < c.n_layer; ++l) {
    const auto t0 = Clock::now();
    TealLayerReport r;
    r.layer = l;
    std::vector<std::vector<float>> attn(L), mlp(L);
    r.attention_error.resize(L);
    r.mlp_error.resize(L);
    BlockSearch(core, stats, l, Model::Block::Attention, {Projection::Q, Projection::K, Projection::V, Projection::O},
                weights, o.block_tokens)
        .run(o.levels, o.step, attn, r.attention_error);
    BlockSearch(core, stats, l, Model::Block::Mlp, {Projection::Gate, Projection::Up, Projection::Down}, weights,
                o.block_tokens)
        .run(o.levels, o.step, mlp, r.mlp_error);
    for (size_t k = 0; k < L; ++k) {
      std::vector<float> s(kProjections);
      for (size_t p = 0; p < kProjections; ++p) s[p] = attn[k][p] + mlp[k][p];
      for (Projection p : kAllProjections) {
        const size_t i = tables.index(k, l, p);
        tables.sparsity[i] = s[static_cast<size_t>(p)];
        tables.thresholds[i] = stats.fit(l, p).quantile(s[static_cast<size_t>(p)]);
      }
      r.sparsity.push_back(std::move(s));
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    std::ostringstream line;
    const size_t show = L / 2;
    line << std::fixed << std::setprecision(2) << "layer " << l << " (" << (l + 1) << "/" << c.n_layer << ") at "
         << o.levels[show] << ":";
    for (Projection p : kAllProjections) line << " " << projection_name(p) << " " << r.sparsity[show][static_cast<size_t>(p)];
    line << std::setprecision(4) << "; block errors " << r.attention_error[show] << " / " << r.mlp_error[show]
         << std::setprecision(1) << "; " << r.seconds << " s";
    say(line.str());
    report.layers.push_back(std::move(r));
  }

  // The model-wide share of weights the thresholds drop, on both parts of the text.
  double total = 0.0;
  for (double w : weights) total += w * c.n_layer;
  for (size_t k = 0; k < L; ++k) {
    double held = 0.0, fit = 0.0;
    for (int l = 0; l < c.n_layer; ++l)
      for (Projection p : kAllProjections) {
        const float t = tables.thresholds[tables.index(k, l, p)];
        if (t <= 0.0f) continue;  // a dense projection drops nothing (not even its exact zeros)
        held += weights[static_cast<size_t>(p)] * stats.held(l, p).share_at_most(t);
        fit += weights[static_cast<size_t>(p)] * stats.fit(l, p).share_at_most(t);
      }
    report.heldout_sparsity.push_back(held / total);
    report.fitted_sparsity.push_back(fit / total);
  }
  return report;
}

}  // namespace kestrel
