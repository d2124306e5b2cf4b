#include "kernels/ref/k_search.h"

#include <algorithm>
#include <cmath>

#include "kernels/ref/rounding.h"

// The quantizers must round exactly as ggml's reference does: no fused
// multiply-adds (GCC does not contract in ISO C++ mode; clang needs telling).
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace kestrel::kernels::ref {
namespace {

constexpr float kAllZero = 1e-15f;  // below this the group counts as all zero

}  // namespace

float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                    float* min_out, uint8_t* aux, float rmin, float rdelta, int nstep) {
  float lo = x[0], hi = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (lo > 0) lo = 0;  // the offset only ever moves values up: min <= 0
  if (hi == lo) {
    std::fill(L, L + n, uint8_t{0});
    *min_out = -lo;
    return 0.0f;
  }
  // Starting point: the plain min/max grid, scored by weighted squared error.
  float iscale = static_cast<float>(nmax) / (hi - lo);
  float scale = 1 / iscale;
  float best_err = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
    L[i] = static_cast<uint8_t>(l);
    const float diff = scale * static_cast<float>(l) + lo - x[i];
    best_err += weights[i] * (diff * diff);
  }
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * static_cast<float>(step) + static_cast<float>(nmax)) / (hi - lo);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      aux[i] = static_cast<uint8_t>(l);
      const float wl = weights[i] * static_cast<float>(l);
      sum_l += wl;
      sum_l2 += wl * static_cast<float>(l);
      sum_xl += wl * x[i];
    }
    // Normal equations of min over (s, m) of sum w (s*l + m - x)^2.
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;
    float s = (sum_w * sum_xl - sum_x * sum_l) / det;
    float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (m > 0) {  // a positive offset is not representable: refit the scale alone
      m = 0;
      s = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = s * static_cast<float>(aux[i]) + m - x[i];
      err += weights[i] * (diff * diff);
    }
    if (err < best_err) {
      std::copy(aux, aux + n, L);
      best_err = err;
      scale = s;
      lo = m;  // later candidates are gridded from the improved offset
    }
  }
  *min_out = -lo;
  return scale;
}

float fit_scale_symmetric(int n, int nmax, const float* x, int8_t* L, const float* weights) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < kAllZero) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  // Projection score of the candidate grid: (sum w x l)^2 / sum w l^2, w = x^2.
  auto score = [&](float iscale, float* sumlx, float* suml2) {
    *sumlx = 0;
    *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = weights ? weights[i] : x[i] * x[i];
      *sumlx += w * x[i] * static_cast<float>(l);
      *suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
  };
  auto assign = [&](float iscale) {
    for (int i = 0; i < n; ++i)
      L[i] = static_cast<int8_t>(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx, suml2;
  score(iscale, &sumlx, &suml2);
  assign(iscale);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int k = -9; k <= 9; ++k) {
    if (k == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / max;
    score(iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      assign(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

float fit_scale_positive(int n, int nmax, const float* x, uint8_t* L, const float* weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kAllZero) {
    std::fill(L, L + n, uint8_t{0});
    return 0.0f;
  }
  auto error_of = [&](float iscale, bool clamp) {
    const float scale = 1 / iscale;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      if (clamp) l = std::min(nmax, l);
      const float diff = x[i] - scale * static_cast<float>(l);
      err += weights[i] * diff * diff;
    }
    return err;
  };
  // The plain grid's codes are not clamped (the largest value maps to nmax).
  float iscale = static_cast<float>(nmax) / max;
  float best = error_of(iscale, false);
  for (int k = -4; k <= 4; ++k) {
    if (k == 0) continue;
    const float candidate = (0.1f * static_cast<float>(k) + static_cast<float>(nmax)) / max;
    const float err = error_of(candidate, true);
    if (err < best) {
      best = err;
      iscale = candidate;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    sumlx += weights[i] * x[i] * static_cast<float>(l);
    suml2 += weights[i] * static_cast<float>(l) * static_cast<float>(l);
  }
  // Move one code at a time to where the others' projection puts it, while
  // the weighted projection (sum w x l)^2 / sum w l^2 grows.
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = weights[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        const int l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (l != L[i]) {
          slx += w * x[i] * static_cast<float>(l);
          sl2 += w * static_cast<float>(l) * static_cast<float>(l);
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

}  // namespace kestrel::kernels::ref
