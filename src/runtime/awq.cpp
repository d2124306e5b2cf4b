#include "runtime/awq.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "kernels/f32_kernels.h"
#include "kernels/hadamard.h"
#include "kernels/quant_kernels.h"
#include "model/weight_rotation.h"
#include "platform/thread_pool.h"

namespace kestrel {

std::string_view awq_input_name(AwqInput in) {
  switch (in) {
    case AwqInput::Attention:
      return "qkv";
    case AwqInput::Output:
      return "o";
    case AwqInput::Mlp:
      return "gate/up";
    case AwqInput::Down:
      return "down";
  }
  return "?";
}

namespace {

bool input_of(Projection first, AwqInput& in) {
  switch (first) {
    case Projection::Q:
      in = AwqInput::Attention;
      return true;
    case Projection::O:
      in = AwqInput::Output;
      return true;
    case Projection::Gate:
      in = AwqInput::Mlp;
      return true;
    case Projection::Down:
      in = AwqInput::Down;
      return true;
    default:
      return false;
  }
}

}  // namespace

AwqInputs::AwqInputs(const ModelConfig& c, int64_t samples, int64_t stride)
    : max_samples_(samples), stride_(stride), seen_(static_cast<size_t>(samples), 0) {
  if (samples < 1 || stride < 1) fail("awq: ", samples, " samples every ", stride, " positions");
  cols_ = {c.n_embd, int64_t{c.n_head} * c.head_dim, c.n_embd, c.n_ff};
  x_.resize(static_cast<size_t>(c.n_layer) * kAwqInputs);
  for (int l = 0; l < c.n_layer; ++l)
    for (int i = 0; i < kAwqInputs; ++i) x_[index(l, AwqInput(i))].resize(static_cast<size_t>(samples * cols_[i]));
}

void AwqInputs::observe(int layer, Projection first, const Batch& b, const float* x, int64_t cols) {
  AwqInput in{};
  if (!input_of(first, in)) return;
  if (cols != cols_[static_cast<size_t>(in)]) fail("awq: input ", awq_input_name(in), " of ", cols, " values");
  std::vector<float>& to = x_[index(layer, in)];
  for (int64_t t = 0; t < b.size(); ++t) {
    const int64_t pos = b.pos[t];
    if (pos % stride_ != 0 || pos / stride_ >= max_samples_) continue;
    const int64_t i = pos / stride_;
    std::copy(x + t * cols, x + (t + 1) * cols, to.begin() + i * cols);
    seen_[static_cast<size_t>(i)] = 1;
  }
}

int64_t AwqInputs::samples() const {
  const auto it = std::find(seen_.begin(), seen_.end(), 0);
  return it - seen_.begin();
}

void AwqInputs::rotate(const DecoderRotation& rotation) {
  const int64_t n = samples();
  for (size_t l = 0; l < x_.size() / kAwqInputs; ++l) {
    const int layer = static_cast<int>(l);
    for (int64_t t = 0; t < n; ++t) {
      rotation.map_attention_input(layer, rows(layer, AwqInput::Attention).data() + t * cols(AwqInput::Attention));
      rotation.map_mlp_input(layer, rows(layer, AwqInput::Mlp).data() + t * cols(AwqInput::Mlp));
      rotation.map_output_input(rows(layer, AwqInput::Output).data() + t * cols(AwqInput::Output),
                                cols(AwqInput::Output));
    }
  }
}

void AwqInputs::rotate_down(int block) {
  const int64_t n = samples(), ff = cols(AwqInput::Down);
  for (size_t l = 0; l < x_.size() / kAwqInputs; ++l)
    for (int64_t t = 0; t < n; ++t)
      kernels::hadamard_chunks(rows(static_cast<int>(l), AwqInput::Down).data() + t * ff, static_cast<int>(ff), block);
}

std::vector<FloatTensor*> matrices_reading(FloatLayer& L, AwqInput in) {
  switch (in) {
    case AwqInput::Attention:
      return {&L.q, &L.k, &L.v};
    case AwqInput::Output:
      return {&L.o};
    case AwqInput::Mlp:
      return {&L.gate, &L.up};
    case AwqInput::Down:
      return {&L.down};
  }
  return {};
}

void fold_awq_scales(FloatLayer& L, const ModelConfig& c, AwqInput in, const std::vector<float>& s) {
  const auto scale_columns = [&](FloatTensor& w) {
    for (int64_t r = 0; r < w.rows(); ++r)
      for (int64_t j = 0; j < w.cols(); ++j) w.row(r)[j] *= s[static_cast<size_t>(j)];
  };
  const auto divide = [&](float* v, int64_t n, auto index_of) {
    for (int64_t j = 0; j < n; ++j) v[j] /= s[static_cast<size_t>(index_of(j))];
  };
  const auto same = [](int64_t j) { return j; };
  switch (in) {
    case AwqInput::Attention:
      for (FloatTensor* w : {&L.q, &L.k, &L.v}) scale_columns(*w);
      divide(L.attn_norm.data.data(), L.attn_norm.cols(), same);
      break;
    case AwqInput::Mlp:
      for (FloatTensor* w : {&L.gate, &L.up}) scale_columns(*w);
      divide(L.ffn_norm.data.data(), L.ffn_norm.cols(), same);
      break;
    case AwqInput::Down:
      scale_columns(L.down);
      for (int64_t r = 0; r < L.up.rows(); ++r)
        for (int64_t j = 0; j < L.up.cols(); ++j) L.up.row(r)[j] /= s[static_cast<size_t>(r)];
      break;
    case AwqInput::Output: {
      scale_columns(L.o);
      // Value row (kv head h, channel d) feeds o's input (q head h * group + i, d): the first head's scale.
      const int64_t hd = c.head_dim, group = c.n_head / c.n_kv_head;
      const auto o_index = [&](int64_t v_row) { return (v_row / hd) * group * hd + v_row % hd; };
      for (int64_t r = 0; r < L.v.rows(); ++r) {
        const float d = s[static_cast<size_t>(o_index(r))];
        for (int64_t j = 0; j < L.v.cols(); ++j) L.v.row(r)[j] /= d;
      }
      if (!L.v_bias.empty()) divide(L.v_bias.data.data(), L.v_bias.cols(), o_index);
      break;
    }
  }
}

std::pair<double, double> projection_error(const FloatTensor& w, const RoundedRowFn& rounded,
                                           const std::vector<float>& x, int64_t n, int64_t max_rows,
                                           int64_t max_samples, bool reference, ThreadPool& pool) {
  const auto& f32 = kernels::f32_kernels();
  const int64_t rows = w.rows(), cols = w.cols(), picked = std::min(rows, max_rows);
  const int64_t step = std::max<int64_t>(1, n / max_samples);
  std::vector<double> err(static_cast<size_t>(pool.size()), 0.0), ref(err.size(), 0.0);
  pool.parallel_for_dynamic(picked, 8, [&](int64_t i0, int64_t i1, int ith) {
    std::vector<float> delta(static_cast<size_t>(cols));
    double e = 0.0, y = 0.0;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i * rows / picked;
      const float* row = w.row(r);
      rounded(r, delta.data());
      for (int64_t j = 0; j < cols; ++j) delta[static_cast<size_t>(j)] -= row[j];
      for (int64_t t = 0; t < n; t += step) {
        const float* xt = x.data() + t * cols;
        const double d = f32.dot(cols, delta.data(), xt), yr = reference ? f32.dot(cols, row, xt) : 0.0;
        e += d * d;
        y += yr * yr;
      }
    }
    err[static_cast<size_t>(ith)] += e;
    ref[static_cast<size_t>(ith)] += y;
  });
  double e = 0.0, y = 0.0;
  for (size_t i = 0; i < err.size(); ++i) {
    e += err[i];
    y += ref[i];
  }
  return {e, y};
}

namespace {

// Mean |x| per channel of X [n x cols]; for the attention output, pooled over
// the heads that share a value head (their scales must agree).
std::vector<double> channel_means(const std::vector<float>& x, int64_t n, int64_t cols, AwqInput in,
                                  const ModelConfig& c) {
  std::vector<double> m(static_cast<size_t>(cols), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j) m[static_cast<size_t>(j)] += std::fabs(x[static_cast<size_t>(t * cols + j)]);
  for (double& v : m) v /= static_cast<double>(n);
  if (in == AwqInput::Output && c.n_head != c.n_kv_head) {
    const int64_t hd = c.head_dim, group = c.n_head / c.n_kv_head;
    for (int64_t h = 0; h < c.n_kv_head; ++h)
      for (int64_t d = 0; d < hd; ++d) {
        double sum = 0.0;
        for (int64_t i = 0; i < group; ++i) sum += m[static_cast<size_t>((h * group + i) * hd + d)];
        for (int64_t i = 0; i < group; ++i) m[static_cast<size_t>((h * group + i) * hd + d)] = sum / group;
      }
  }
  return m;
}

std::vector<float> scales_at(const std::vector<double>& means, double alpha) {
  std::vector<float> s(means.size());
  double lo = 1e30, hi = 0.0;
  for (size_t j = 0; j < means.size(); ++j) {
    const double v = std::max(std::pow(std::max(means[j], 1e-12), alpha), 1e-4);
    s[j] = static_cast<float>(v);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double norm = std::sqrt(lo * hi);
  for (float& v : s) v = static_cast<float>(v / norm);
  return s;
}

struct Scored {
  FloatTensor* w;
  DType type;
};

// The group's error with its matrices scaled by s, rounded to their types and unscaled.
std::pair<double, double> output_error(const std::vector<Scored>& mats, const std::vector<float>& s,
                                       const std::vector<float>& x, int64_t n, int64_t max_rows, int64_t max_samples,
                                       bool reference, ThreadPool& pool) {
  double e = 0.0, y = 0.0;
  for (const Scored& m : mats) {
    const int64_t cols = m.w->cols();
    const auto& k = kernels::quant_kernels(m.type);
    const auto [me, my] = projection_error(
        *m.w,
        [&](int64_t r, float* back) {
          const float* w = m.w->row(r);
          thread_local std::vector<float> scaled;
          thread_local std::vector<uint8_t> q;
          scaled.resize(static_cast<size_t>(cols));
          q.resize(row_bytes(m.type, cols));
          for (int64_t j = 0; j < cols; ++j) scaled[static_cast<size_t>(j)] = w[j] * s[static_cast<size_t>(j)];
          k.quantize_weights(scaled.data(), q.data(), cols);
          k.dequantize_row(q.data(), back, cols);
          for (int64_t j = 0; j < cols; ++j) back[j] /= s[static_cast<size_t>(j)];
        },
        x, n, max_rows, max_samples, reference, pool);
    e += me;
    y += my;
  }
  return {e, y};
}

}  // namespace

double clip_awq_weights(FloatTensor& w, DType type, const std::vector<float>& x, int64_t n, ThreadPool& pool) {
  constexpr int64_t kBlock = 32;
  if (traits(type).block_size != kBlock) return 0.0;
  const int64_t cols = w.cols(), blocks = cols / kBlock;
  // C_k = Σ_t x_t x_tᵀ over block k's channels: [blocks][32 x 32].
  std::vector<float> cov(static_cast<size_t>(blocks * kBlock * kBlock), 0.0f);
  pool.parallel_for(blocks, [&](int64_t k0, int64_t k1, int) {
    for (int64_t k = k0; k < k1; ++k) {
      float* c = cov.data() + k * kBlock * kBlock;
      for (int64_t t = 0; t < n; ++t) {
        const float* xb = x.data() + t * cols + k * kBlock;
        for (int64_t i = 0; i < kBlock; ++i)
          for (int64_t j = 0; j < kBlock; ++j) c[i * kBlock + j] += xb[i] * xb[j];
      }
    }
  });
  const auto& qk = kernels::quant_kernels(type);
  const auto& f32 = kernels::f32_kernels();
  constexpr int kSteps = 10;  // ratios 1, 0.95, ..., 0.55 (AWQ's grid down to half)
  std::vector<int64_t> clipped(static_cast<size_t>(pool.size()), 0);
  pool.parallel_for_dynamic(w.rows(), 16, [&](int64_t r0, int64_t r1, int ith) {
    std::array<float, kBlock> cand{}, back{}, cd{};
    std::vector<uint8_t> q(row_bytes(type, kBlock));
    for (int64_t r = r0; r < r1; ++r) {
      float* row = w.row(r);
      for (int64_t k = 0; k < blocks; ++k) {
        float* wb = row + k * kBlock;
        const float* c = cov.data() + k * kBlock * kBlock;
        float amax = 0.0f;
        for (int64_t i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(wb[i]));
        if (amax == 0.0f) continue;
        double best = 0.0;
        int best_step = 0;
        for (int step = 0; step < kSteps; ++step) {
          const float limit = amax * (1.0f - 0.05f * static_cast<float>(step));
          for (int64_t i = 0; i < kBlock; ++i) cand[static_cast<size_t>(i)] = std::clamp(wb[i], -limit, limit);
          qk.quantize_weights(cand.data(), q.data(), kBlock);
          qk.dequantize_row(q.data(), back.data(), kBlock);
          for (int64_t i = 0; i < kBlock; ++i) back[static_cast<size_t>(i)] -= wb[i];
          for (int64_t i = 0; i < kBlock; ++i)
            cd[static_cast<size_t>(i)] = f32.dot(kBlock, c + i * kBlock, back.data());
          const double e = f32.dot(kBlock, back.data(), cd.data());
          if (step == 0 || e < best) {
            best = e;
            best_step = step;
          }
        }
        if (best_step == 0) continue;
        const float limit = amax * (1.0f - 0.05f * static_cast<float>(best_step));
        for (int64_t i = 0; i < kBlock; ++i) wb[i] = std::clamp(wb[i], -limit, limit);
        ++clipped[static_cast<size_t>(ith)];
      }
    }
  });
  int64_t total = 0;
  for (int64_t v : clipped) total += v;
  return static_cast<double>(total) / static_cast<double>(std::max<int64_t>(1, w.rows() * blocks));
}

std::vector<AwqLayerReport> apply_awq(FloatDecoder& d, AwqInputs& inputs, const AwqTypeFn& type_of, const AwqOptions& o,
                                      ThreadPool& pool, const AwqProgressFn& progress) {
  const int64_t n = inputs.samples();
  if (n < 16) fail("awq: ", n, " calibration positions recorded; at least 16 are needed (use a longer text)");
  if (o.grid < 1 || o.max_rows < 1 || o.max_samples < 1)
    fail("awq: a grid of ", o.grid, ", ", o.max_rows, " rows and ", o.max_samples, " samples");
  const ModelConfig& c = d.config;
  std::vector<AwqLayerReport> reports;
  for (int l = 0; l < c.n_layer; ++l) {
    const auto t0 = std::chrono::steady_clock::now();
    FloatLayer& L = d.layers[static_cast<size_t>(l)];
    AwqLayerReport report;
    report.layer = l;
    // AWQ's order: each fold changes a matrix a later group reads (v before o, up before down).
    for (AwqInput in : {AwqInput::Attention, AwqInput::Output, AwqInput::Mlp, AwqInput::Down}) {
      std::vector<Scored> mats;
      for (FloatTensor* w : matrices_reading(L, in)) mats.push_back({w, type_of(*w)});
      std::vector<float>& x = inputs.rows(l, in);
      const int64_t cols = inputs.cols(in);
      const std::vector<double> means = channel_means(x, n, cols, in, c);
      AwqGroupReport& g = report.groups[static_cast<size_t>(in)];
      double best = 0.0, y = 0.0;
      std::vector<float> best_s;
      for (int i = 0; i < o.grid; ++i) {
        const double alpha = static_cast<double>(i) / o.grid;
        std::vector<float> s = scales_at(means, alpha);
        const auto [e, ref] = output_error(mats, s, x, n, o.max_rows, o.max_samples, i == 0, pool);
        if (i == 0) y = ref;
        const double rel = y > 0.0 ? e / y : e;
        if (i == 0) g.error_plain = rel;
        if (i == 0 || rel < best) {
          best = rel;
          g.alpha = alpha;
          best_s = std::move(s);
        }
      }
      g.error_awq = best;
      if (g.alpha > 0.0) {
        fold_awq_scales(L, c, in, best_s);
        // The group's inputs as the scaled matrices see them: x / s.
        for (int64_t t = 0; t < n; ++t)
          for (int64_t j = 0; j < cols; ++j) x[static_cast<size_t>(t * cols + j)] /= best_s[static_cast<size_t>(j)];
      }
      if (o.clip && !o.unclipped[static_cast<size_t>(in)]) {
        double share = 0.0;
        for (const Scored& m : mats)
          share += clip_awq_weights(*m.w, m.type, x, n, pool) / static_cast<double>(mats.size());
        g.clipped = share;
      }
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) progress(report);
    reports.push_back(report);
  }
  return reports;
}

}  // namespace kestrel
