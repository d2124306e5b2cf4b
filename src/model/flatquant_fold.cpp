#include "model/flatquant_fold.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/blocks.h"
#include "model/flat_transform.h"
#include "platform/thread_pool.h"

namespace kestrel {
namespace {

FloatTensor& matrix_of(FloatLayer& L, const std::string& name) {
  if (name == "attn_q") return L.q;
  if (name == "attn_k") return L.k;
  if (name == "attn_v") return L.v;
  if (name == "attn_output") return L.o;
  if (name == "ffn_gate") return L.gate;
  if (name == "ffn_up") return L.up;
  if (name == "ffn_down") return L.down;
  fail("flatquant: no matrix '", name, "'");
}

std::vector<float> read_clip(const gguf::File& f, const std::string& name, int64_t rows) {
  std::vector<float> v = read_flat_f32(f, name, {rows});
  for (float r : v)
    if (!(r > 0.0f && r <= 1.0f)) fail("flatquant: tensor '", name, "' holds a clipping ratio outside (0, 1]: ", r);
  return v;
}

FloatTensor tensor(std::string name, std::vector<int64_t> ne, std::vector<float> data) {
  FloatTensor t;
  t.name = std::move(name);
  t.ne = std::move(ne);
  t.data = std::move(data);
  return t;
}

}  // namespace

void clip_row_q4_0(float* row, int64_t n, float ratio) {
  using kernels::kQK;
  for (int64_t b = 0; b + kQK <= n; b += kQK) {
    float* x = row + b;
    float m = 0.0f;
    for (int j = 0; j < kQK; ++j)
      if (std::fabs(x[j]) > std::fabs(m)) m = x[j];
    const float a = ratio * std::fabs(m);
    const float lo = m > 0.0f ? -a * 7.0f / 8.0f : -a;
    const float hi = m > 0.0f ? a : a * 7.0f / 8.0f;
    for (int j = 0; j < kQK; ++j) x[j] = std::clamp(x[j], lo, hi);
  }
}

FlatQuantFold fold_flatquant(FloatDecoder& d, const gguf::File& f, DType target, ThreadPool& pool) {
  const bool float_target = target == DType::F32 || target == DType::F16 || target == DType::BF16;
  const std::string trained = f.get_string("kestrel.flatquant.weight_type").value_or("");
  if (trained != "q4_0")
    fail("flatquant: the transforms file was trained for '", trained, "' weights; kestrel folds q4_0");
  if (!float_target && target != DType::Q4_0)
    fail(
        "flatquant: the transforms were trained for Q4_0 weights; quantize to Q4_0 (or F32/F16/BF16 to check the "
        "fold), not ",
        dtype_name(target));
  const ModelConfig& c = d.config;
  const auto n_layer = f.get_u64("kestrel.flatquant.n_layer");
  const auto n_embd = f.get_u64("kestrel.flatquant.n_embd");
  if (!n_layer || !n_embd) fail("flatquant: not a transforms file (no kestrel.flatquant.n_layer / n_embd)");
  if (*n_layer != static_cast<uint64_t>(c.n_layer) || *n_embd != static_cast<uint64_t>(c.n_embd))
    fail("flatquant: the transforms are for a model of ", *n_layer, " layers x ", *n_embd, " channels; this one has ",
         c.n_layer, " x ", c.n_embd);
  FlatQuantFold out;
  out.trained_for = f.get_string("kestrel.flatquant.model").value_or("");
  out.note = f.get_string("kestrel.flatquant.train_note").value_or("");
  for (int l = 0; l < c.n_layer; ++l) {
    FloatLayer& L = d.layers[static_cast<size_t>(l)];
    for (int s = 0; s < kFlatSites; ++s) {
      const auto site = static_cast<FlatSite>(s);
      const std::vector<std::string>& names = flat_site_matrices(site);
      const int64_t n = matrix_of(L, names[0]).cols();
      const FlatTransform t = read_flat_transform(f, l, site, n);
      const FlatTransform w = t.for_weights();
      for (const std::string& name : names) {
        FloatTensor& m = matrix_of(L, name);
        if (m.cols() != n) fail("flatquant: ", m.name, " reads ", m.cols(), " values, its site ", n);
        const std::vector<float> clip = read_clip(f, "blk." + std::to_string(l) + "." + name + ".flat_clip", m.rows());
        pool.parallel_for(m.rows(), [&](int64_t r0, int64_t r1, int) {
          std::vector<float> row(static_cast<size_t>(n));
          for (int64_t r = r0; r < r1; ++r) {
            w.apply(m.row(r), row.data());
            if (!float_target) clip_row_q4_0(row.data(), n, clip[static_cast<size_t>(r)]);
            std::copy(row.begin(), row.end(), m.row(r));
          }
        });
        m.replaces = m.name;
        m.name = flat_matrix_name(l, name);
      }
      const std::string p = flat_site_prefix(l, site);
      out.transforms.push_back(tensor(p + "scale", {n}, t.scale()));
      out.transforms.push_back(tensor(p + "p1", {t.n1(), t.n1()}, t.p1()));
      out.transforms.push_back(tensor(p + "p2", {t.n2(), t.n2()}, t.p2()));
      if (t.act_clip() != 1.0f) out.transforms.push_back(tensor(p + "act_clip", {1}, {t.act_clip()}));
    }
  }
  return out;
}

}  // namespace kestrel
