#include "unit/sampling/exact_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace kestrel::test {

Filtered exact_filtered(const std::vector<float>& logits, const SamplingParams& p) {
  const size_t n = logits.size();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  size_t keep = n;
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < n) keep = p.top_k;
  const double max = logits[order[0]];
  Filtered f;
  f.top_p_margin = std::numeric_limits<double>::infinity();
  f.min_p_margin = std::numeric_limits<double>::infinity();

  if (p.top_p < 1.0f) {
    double z = 0;
    for (size_t i = 0; i < keep; ++i) z += std::exp(static_cast<double>(logits[order[i]]) - max);
    double before = 0;
    size_t top_p_keep = keep;
    for (size_t i = 0; i < keep; ++i) {
      if (i > 0 && before >= p.top_p) {
        top_p_keep = i;
        f.top_p_margin = std::min(f.top_p_margin, before - p.top_p);  // the first token dropped
        break;
      }
      if (i > 0) f.top_p_margin = std::min(f.top_p_margin, p.top_p - before);  // kept ones
      before += std::exp(static_cast<double>(logits[order[i]]) - max) / z;
    }
    keep = top_p_keep;
  }
  if (p.min_p > 0.0f) {
    const double threshold = max + std::log(static_cast<double>(p.min_p));
    size_t min_p_keep = 1;
    while (min_p_keep < keep && logits[order[min_p_keep]] >= threshold) ++min_p_keep;
    for (size_t i = 1; i < keep; ++i)
      f.min_p_margin = std::min(f.min_p_margin, std::fabs(logits[order[i]] - threshold));
    keep = min_p_keep;
  }
  double z = 0;
  for (size_t i = 0; i < keep; ++i) z += std::exp((static_cast<double>(logits[order[i]]) - max) / p.temperature);
  for (size_t i = 0; i < keep; ++i) {
    const double q = std::exp((static_cast<double>(logits[order[i]]) - max) / p.temperature) / z;
    if (q == 0) continue;  // -inf logits kept by top-k: probability 0
    f.ids.push_back(order[i]);
    f.prob.push_back(q);
  }
  return f;
}

double gamma_q(double a, double x) {
  if (x <= 0) return 1.0;
  const double log_front = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1) {
    // P(a, x) = e^-x x^a / Gamma(a + 1) * sum_k x^k / ((a + 1)...(a + k)).
    double term = 1.0 / a, sum = term;
    for (int k = 1; k < 1000000; ++k) {
      term *= x / (a + k);
      sum += term;
      if (term < sum * 1e-16) break;
    }
    return std::max(0.0, 1.0 - sum * std::exp(log_front));
  }
  // Q(a, x) = e^-x x^a / Gamma(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - 2 (2 - a) / ...)),
  // evaluated by the modified Lentz method.
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 1000000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1) < 1e-16) break;
  }
  return std::exp(log_front) * h;
}

ChiSquare chi_square(const Filtered& f, const std::vector<int64_t>& counts) {
  ChiSquare r;
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  std::vector<char> inside(counts.size(), 0);
  for (int32_t id : f.ids) inside[static_cast<size_t>(id)] = 1;
  for (size_t i = 0; i < counts.size(); ++i)
    if (!inside[i]) r.outside += counts[i];

  // Tokens by probability, most likely first; bins close once expected >= 5.
  std::vector<size_t> idx(f.ids.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return f.prob[a] > f.prob[b]; });
  std::vector<double> expected, observed;
  double e = 0, o = 0;
  for (size_t k : idx) {
    e += f.prob[k] * static_cast<double>(total);
    o += static_cast<double>(counts[static_cast<size_t>(f.ids[k])]);
    if (e >= 5) {
      expected.push_back(e);
      observed.push_back(o);
      e = o = 0;
    }
  }
  if (e > 0 || o > 0) {  // the tail below 5 joins the last bin
    if (expected.empty()) {
      expected.push_back(e);
      observed.push_back(o);
    } else {
      expected.back() += e;
      observed.back() += o;
    }
  }
  for (size_t b = 0; b < expected.size(); ++b) r.stat += (observed[b] - expected[b]) * (observed[b] - expected[b]) / expected[b];
  r.bins = static_cast<int>(expected.size());
  r.df = std::max(1, r.bins - 1);
  r.p_value = r.bins < 2 ? 1.0 : gamma_q(r.df / 2.0, r.stat / 2.0);
  if (r.outside > 0) {
    r.p_value = 0;
    r.stat = std::numeric_limits<double>::infinity();
  }
  return r;
}

std::vector<float> make_logits(Shape shape, int n_vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<float> l(static_cast<size_t>(n_vocab));
  switch (shape) {
    case Shape::Peaked:
      for (auto& x : l) x = static_cast<float>(gauss(rng));
      l[rng() % l.size()] = 14.0f;
      for (int i = 0; i < 6; ++i) l[rng() % l.size()] = 9.0f + static_cast<float>(i) * 0.5f;
      break;
    case Shape::Flat:
      for (auto& x : l) x = static_cast<float>(0.3 * gauss(rng));
      break;
    case Shape::Zipf: {
      std::vector<int> rank(l.size());
      std::iota(rank.begin(), rank.end(), 1);
      std::shuffle(rank.begin(), rank.end(), rng);
      for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(-1.1 * std::log(rank[i]) + 0.01 * gauss(rng));
      break;
    }
    case Shape::Ties:
      // Steps of 0.5 nats: runs of hundreds of equal logits at every level,
      // so every filter's boundary falls inside a run.
      for (auto& x : l) x = static_cast<float>(std::round(2.0 * (1.5 * gauss(rng))) / 2.0);
      for (size_t i = 0; i < l.size(); i += 7) l[i] = -std::numeric_limits<float>::infinity();
      break;
    case Shape::LmLike:
      for (auto& x : l) x = static_cast<float>(3.5 * gauss(rng) - 2.0);
      for (int i = 0; i < 24; ++i) l[rng() % l.size()] = static_cast<float>(18.0 - 1.2 * std::sqrt(i) + 0.3 * gauss(rng));
      break;
  }
  return l;
}

std::string shape_name(Shape shape) {
  switch (shape) {
    case Shape::Peaked: return "peaked";
    case Shape::Flat: return "flat";
    case Shape::Zipf: return "zipf";
    case Shape::Ties: return "ties";
    case Shape::LmLike: return "lmlike";
  }
  return "?";
}

}  // namespace kestrel::test
