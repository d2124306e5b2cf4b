#include "model/flat_transform.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "kernels/blocks.h"
#include "kernels/kronecker.h"

namespace kestrel {
namespace {

// The inverse's transpose of an n x n row-major matrix, by Gauss-Jordan with
// partial pivoting in double; throws when a pivot vanishes against the
// matrix's scale.
std::vector<float> inverse_transpose(const std::vector<float>& m, int n, const std::string& what) {
  std::vector<double> a(m.begin(), m.end()), inv(static_cast<size_t>(n) * n, 0.0);
  double scale = 0.0;
  for (double v : a) scale = std::max(scale, std::fabs(v));
  for (int i = 0; i < n; ++i) inv[static_cast<size_t>(i) * n + i] = 1.0;
  for (int c = 0; c < n; ++c) {
    int piv = c;
    for (int r = c + 1; r < n; ++r)
      if (std::fabs(a[static_cast<size_t>(r) * n + c]) > std::fabs(a[static_cast<size_t>(piv) * n + c])) piv = r;
    const double p = a[static_cast<size_t>(piv) * n + c];
    if (!(std::fabs(p) > scale * 1e-12))
      fail("flatquant: ", what, " is singular (no inverse to fold into the weights)");
    if (piv != c)
      for (int k = 0; k < n; ++k) {
        std::swap(a[static_cast<size_t>(piv) * n + k], a[static_cast<size_t>(c) * n + k]);
        std::swap(inv[static_cast<size_t>(piv) * n + k], inv[static_cast<size_t>(c) * n + k]);
      }
    for (int k = 0; k < n; ++k) {
      a[static_cast<size_t>(c) * n + k] /= p;
      inv[static_cast<size_t>(c) * n + k] /= p;
    }
    for (int r = 0; r < n; ++r) {
      const double f = a[static_cast<size_t>(r) * n + c];
      if (r == c || f == 0.0) continue;
      for (int k = 0; k < n; ++k) {
        a[static_cast<size_t>(r) * n + k] -= f * a[static_cast<size_t>(c) * n + k];
        inv[static_cast<size_t>(r) * n + k] -= f * inv[static_cast<size_t>(c) * n + k];
      }
    }
  }
  std::vector<float> t(static_cast<size_t>(n) * n);
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c)
      t[static_cast<size_t>(c) * n + r] = static_cast<float>(inv[static_cast<size_t>(r) * n + c]);
  return t;
}

}  // namespace

const char* flat_site_name(FlatSite site) {
  switch (site) {
    case FlatSite::AttnIn:
      return "attn_in";
    case FlatSite::AttnOut:
      return "attn_out";
    case FlatSite::FfnIn:
      return "ffn_in";
    case FlatSite::FfnDown:
      return "ffn_down";
  }
  return "?";
}

const std::vector<std::string>& flat_site_matrices(FlatSite site) {
  static const std::vector<std::string> m[kFlatSites] = {
      {"attn_q", "attn_k", "attn_v"}, {"attn_output"}, {"ffn_gate", "ffn_up"}, {"ffn_down"}};
  return m[static_cast<int>(site)];
}

std::string flat_site_prefix(int layer, FlatSite site) {
  return "blk." + std::to_string(layer) + ".flat_" + flat_site_name(site) + ".";
}

std::string flat_matrix_name(int layer, const std::string& matrix) {
  return "blk." + std::to_string(layer) + "." + matrix + "_flat.weight";
}

FlatTransform::FlatTransform(int n1, int n2, std::vector<float> scale, std::vector<float> p1, std::vector<float> p2)
    : n1_(n1), n2_(n2), scale_(std::move(scale)), p1_(std::move(p1)), p2_(std::move(p2)) {
  if (n1 < 1 || n2 < 1) fail("flatquant: Kronecker factors of ", n1, " x ", n2);
  if (static_cast<int64_t>(scale_.size()) != size() || static_cast<int64_t>(p1_.size()) != int64_t{n1} * n1 ||
      static_cast<int64_t>(p2_.size()) != int64_t{n2} * n2)
    fail("flatquant: a ", n1, " x ", n2, " transform needs ", size(), " scales and factors of ", n1 * n1, " and ",
         n2 * n2, " values");
  for (const auto* v : {&scale_, &p1_, &p2_})
    for (float x : *v)
      if (!std::isfinite(x)) fail("flatquant: a transform holds a value that is not finite");
}

void FlatTransform::apply(const float* x, float* y, int64_t rows, Isa isa) const {
  const kernels::KroneckerRowFn row = kernels::kronecker_row_kernel(isa);
  thread_local std::vector<float> tmp;  // a projection input per token on the decode path: no allocation
  tmp.resize(static_cast<size_t>(size()));
  for (int64_t r = 0; r < rows; ++r)
    row(x + r * size(), scale_.data(), p1_.data(), n1_, p2_.data(), n2_, tmp.data(), y + r * size());
}

void FlatTransform::set_act_clip(float ratio) {
  if (!(ratio > 0.0f && ratio <= 1.0f)) fail("flatquant: an activation clipping ratio outside (0, 1]: ", ratio);
  act_clip_ = ratio;
}

void FlatTransform::clip_activations(float* y, int64_t rows) const {
  if (act_clip_ == 1.0f) return;
  constexpr int kBlock = kernels::kQK;  // the activation formats' block (Q8_0), which act=a4 scales
  for (float* b = y; b + kBlock <= y + rows * size(); b += kBlock) {
    float amax = 0.0f;
    for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(b[j]));
    const float c = act_clip_ * amax;
    for (int j = 0; j < kBlock; ++j) b[j] = std::clamp(b[j], -c, c);
  }
}

FlatTransform FlatTransform::for_weights() const {
  std::vector<float> inv_s(scale_.size());
  for (size_t i = 0; i < scale_.size(); ++i) {
    if (scale_[i] == 0.0f) fail("flatquant: a transform's channel scale is zero");
    inv_s[i] = 1.0f / scale_[i];
  }
  return FlatTransform(n1_, n2_, std::move(inv_s), inverse_transpose(p1_, n1_, "a transform's first factor"),
                       inverse_transpose(p2_, n2_, "a transform's second factor"));
}

std::vector<float> read_flat_f32(const gguf::File& f, const std::string& name, const std::vector<int64_t>& ne) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) fail("flatquant: the file has no tensor '", name, "'");
  if (t->type != DType::F32) fail("flatquant: tensor '", name, "' is ", dtype_name(t->type), ", not F32");
  if (t->ne != ne)
    fail("flatquant: tensor '", name, "' has shape ", gguf::shape_text(t->ne), ", expected ", gguf::shape_text(ne));
  std::vector<float> v(static_cast<size_t>(t->n_elements()));
  std::memcpy(v.data(), t->data, v.size() * sizeof(float));
  return v;
}

FlatTransform read_flat_transform(const gguf::File& f, int layer, FlatSite site, int64_t n) {
  const std::string p = flat_site_prefix(layer, site);
  const gguf::TensorInfo* p1 = f.find_tensor(p + "p1");
  const gguf::TensorInfo* p2 = f.find_tensor(p + "p2");
  if (!p1 || !p2) fail("flatquant: the file has no tensor '", p + (p1 ? "p2" : "p1"), "'");
  if (p1->ne.size() != 2 || p2->ne.size() != 2 || p1->ne[0] * p2->ne[0] != n)
    fail("flatquant: ", p, "p1 ", gguf::shape_text(p1->ne), " and p2 ", gguf::shape_text(p2->ne),
         " do not make a transform of ", n, " values");
  const int n1 = static_cast<int>(p1->ne[0]), n2 = static_cast<int>(p2->ne[0]);
  FlatTransform t(n1, n2, read_flat_f32(f, p + "scale", {n}), read_flat_f32(f, p + "p1", {n1, n1}),
                  read_flat_f32(f, p + "p2", {n2, n2}));
  if (f.find_tensor(p + "act_clip")) t.set_act_clip(read_flat_f32(f, p + "act_clip", {1})[0]);
  return t;
}

}  // namespace kestrel
