#include "sampling/sortfree.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/hash.h"

namespace kestrel {

using sampling::above;
using sampling::higher;
using sampling::Key;
using sampling::kEverything;
using sampling::kIdMax;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The first index holding m, the row's maximum: the lowest id among equal maxima.
int32_t first_max(const float* x, int64_t n, const float* block_max, float m) {
  for (int64_t b = 0; b < sampling::n_blocks(n); ++b) {
    if (block_max[b] != m) continue;
    for (int64_t i = b * sampling::kBlock; i < n; ++i)
      if (x[i] == m) return static_cast<int32_t>(i);
  }
  return 0;
}

int64_t first_nan(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(x[i])) return i;
  return -1;
}

// The key with more tokens above it.
Key lower(Key a, Key b) { return higher(a, b) ? b : a; }

}  // namespace

SortFreeSampler::SortFreeSampler(Isa isa) : k_(sampling::sortfree_kernels(isa)) {}

void SortFreeSampler::prepare(std::span<const float> logits, const SamplingParams& params) {
  const int64_t n = static_cast<int64_t>(logits.size());
  const float* x = logits.data();
  if (n == 0) fail("sampler: no logits");
  fixed_ = -1;
  n_ = 0;
  rounds_ = 0;
  sums_valid_ = false;

  block_max_.resize(static_cast<size_t>(sampling::n_blocks(n)));
  const sampling::ScanResult scan = k_.scan_max(x, n, block_max_.data());
  if (scan.nan) fail("sampler: logit of token ", first_nan(x, n), " is NaN");
  const float m = scan.max;
  const int32_t top = first_max(x, n, block_max_.data(), m);
  if (params.temperature <= 0.0f) {
    fixed_ = top;
    return;
  }
  if (m == -kInf) fail("sampler: every logit is -inf");
  if (m == kInf) fail("sampler: logit of token ", top, " is +inf");

  const bool top_k_on = params.top_k > 0 && params.top_k < n;
  top_p_on_ = params.top_p < 1.0f;
  top_p_ = params.top_p;
  const bool min_p_on = params.min_p > 0.0f;
  // The reference's float arithmetic, so that ties with the threshold agree.
  const float min_logit = min_p_on ? m + std::log(params.min_p) : -kInf;
  // One token kept: k = 1; p <= 0 (the first token already reaches it); a
  // min-p threshold above the maximum (the reference keeps the first token).
  if ((top_k_on && params.top_k == 1) || (top_p_on_ && params.top_p <= 0.0f) || (min_p_on && !(min_logit <= m))) {
    fixed_ = top;
    return;
  }

  // Every kept token is >= t. -inf logits never are: their probability is 0.
  float t = std::numeric_limits<float>::lowest();
  if (top_k_on && params.top_k <= sampling::n_blocks(n)) {
    // k blocks have a maximum >= the k-th largest block maximum, so the top-k
    // boundary is at least that.
    block_scratch_ = block_max_;
    const auto kth = block_scratch_.begin() + (params.top_k - 1);
    std::nth_element(block_scratch_.begin(), kth, block_scratch_.end(), std::greater<float>());
    t = std::max(t, *kth);
  }
  // Without top-p nothing needs the mass below min-p's threshold.
  if (!top_p_on_ && min_p_on) t = std::max(t, min_logit);

  l_.resize(static_cast<size_t>(n));
  id_.resize(static_cast<size_t>(n));
  int64_t c = k_.compact_ge(x, n, t, block_max_.data(), id_.data(), l_.data());
  if (top_k_on && c > params.top_k) {
    const Key kth = select_kth(c, params.top_k);
    c = k_.filter(l_.data(), id_.data(), nullptr, nullptr, c, Key{kth.logit, kth.id + 1}, true);
  }
  if (top_p_on_) {
    // The temperature-1 probabilities over the top-k set (before min-p), as
    // the reference rounds them.
    p_.resize(static_cast<size_t>(n));
    const double z = k_.exp_weights(l_.data(), c, m, 1.0f, p_.data());
    k_.normalize(p_.data(), c, z);
  }
  if (min_p_on)
    c = k_.filter(l_.data(), id_.data(), top_p_on_ ? p_.data() : nullptr, nullptr, c, Key{min_logit, kIdMax}, true);
  if (c == 1) {
    fixed_ = id_[0];
    return;
  }
  v_.resize(static_cast<size_t>(n));
  k_.exp_weights(l_.data(), c, m, params.temperature, v_.data());
  sums_.resize(static_cast<size_t>(sampling::n_chunks(n)));
  n_ = c;
  low_ = kEverything;
  high_ = m;
  // The first token is always kept; without top-p every candidate is.
  members_ = top_p_on_ ? Key{m, top + 1} : kEverything;
}

Key SortFreeSampler::select_kth(int64_t n, int64_t k) {
  sel_l_.assign(l_.begin(), l_.begin() + n);
  sel_id_.assign(id_.begin(), id_.begin() + n);
  // The answer does not depend on the pivots, only the work does; a fixed
  // stream keeps the work repeatable.
  uint64_t state = 0x5EEDull;
  int64_t need = k;  // how many of the remaining entries belong to the top k
  for (;;) {
    const size_t un = static_cast<size_t>(n);
    float a = sel_l_[splitmix64(state) % un], b = sel_l_[splitmix64(state) % un], c = sel_l_[splitmix64(state) % un];
    const float x = std::max(std::min(a, b), std::min(std::max(a, b), c));  // median of three
    int64_t gt = 0, eq = 0;
    k_.count_split(sel_l_.data(), n, x, &gt, &eq);
    if (gt >= need) {
      n = k_.filter(sel_l_.data(), sel_id_.data(), nullptr, nullptr, n, Key{x, 0}, true);  // l > x
    } else if (gt + eq >= need) {
      // The boundary is the (need - gt)-th entry equal to x, in id order.
      int64_t r = need - gt;
      for (int64_t i = 0; i < n; ++i)
        if (sel_l_[static_cast<size_t>(i)] == x && --r == 0) return Key{x, sel_id_[static_cast<size_t>(i)]};
    } else {
      need -= gt + eq;
      n = k_.filter(sel_l_.data(), sel_id_.data(), nullptr, nullptr, n, Key{x, kIdMax}, false);  // l < x
    }
  }
}

int64_t SortFreeSampler::find(double target) const {
  const int64_t chunks = sampling::n_chunks(n_);
  double before = 0.0;
  int64_t c = 0, last_positive = 0;
  for (; c < chunks; ++c) {
    if (sums_[static_cast<size_t>(c)] > 0.0) {
      if (before + sums_[static_cast<size_t>(c)] > target) break;
      last_positive = c;
    }
    before += sums_[static_cast<size_t>(c)];
  }
  if (c == chunks) {  // rounding put the target at the total: the last token with weight
    c = last_positive;
    target = std::numeric_limits<double>::infinity();
  }
  // Inside the chunk, in order. The chunk's sum was added in another order, so
  // the running sum may end a rounding short of it: then the last token with weight.
  const int64_t end = std::min(n_, (c + 1) * sampling::kChunk);
  int64_t last = -1;
  double acc = before;
  for (int64_t i = c * sampling::kChunk; i < end; ++i) {
    const size_t s = static_cast<size_t>(i);
    if (v_[s] > 0.0f && above(l_[s], id_[s], low_)) {
      last = i;
      acc += v_[s];
      if (acc > target) return i;
    }
  }
  return last;
}

int32_t SortFreeSampler::draw(std::mt19937& rng) {
  if (fixed_ >= 0) return fixed_;
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  // Terminates: the first token is always a candidate and always kept, and every
  // rejected round removes at least the token it drew from the candidates.
  for (;;) {
    if (!sums_valid_) {
      total_ = k_.chunk_sums(l_.data(), id_.data(), v_.data(), n_, low_, sums_.data());
      sums_valid_ = true;
    }
    const int64_t found = find(uni(rng) * total_);
    // Cannot happen (the first token is a candidate of weight 1); no abort if it does.
    if (found < 0) fail("sampler: sorting-free draw found no candidate with weight");
    const size_t i = static_cast<size_t>(found);
    const Key j{l_[i], id_[i]};
    if (above(j.logit, j.id, members_)) return j.id;

    ++rounds_;
    // Second pivot halfway between j and high_ (halves written apart: no overflow).
    const float mid = 0.5f * j.logit + 0.5f * high_;
    const bool dual = mid > j.logit;
    const Key k2 = dual ? Key{mid, kIdMax} : j;  // {mid, kIdMax}: the tokens with l >= mid
    const sampling::AboveSums s = k_.sums_above(l_.data(), id_.data(), p_.data(), n_, j, k2);
    if (s.mass[0] < top_p_) {  // the tokens before j hold less than p: j is kept
      members_ = lower(members_, Key{j.logit, j.id + 1});
      return j.id;
    }
    int64_t left = 0;
    if (dual && s.mass[1] < top_p_) {  // every token with l >= mid is kept: the boundary is in (j, mid)
      low_ = j;
      high_ = mid;
      members_ = lower(members_, k2);
      left = s.count[0];
    } else if (dual) {  // a token with l >= mid already fails: so does everything below mid
      low_ = k2;
      left = s.count[1];
    } else {
      low_ = j;
      left = s.count[0];
    }
    sums_valid_ = false;
    // Drop the rejected tokens once they are half the arrays.
    if (2 * left <= n_) n_ = k_.filter(l_.data(), id_.data(), p_.data(), v_.data(), n_, low_, true);
  }
}

}  // namespace kestrel
