#include "model/importance_matrix.h"

#include <cmath>
#include <cstring>
#include <optional>

#include "core/error.h"
#include "gguf/gguf.h"

namespace kestrel {
namespace {

constexpr std::string_view kSums = ".in_sum2", kCounts = ".counts";

bool strip(std::string& name, std::string_view tail) {
  if (name.size() <= tail.size() || name.compare(name.size() - tail.size(), tail.size(), tail) != 0) return false;
  name.resize(name.size() - tail.size());
  return true;
}

std::vector<float> f32_values(const gguf::TensorInfo& t, const std::string& where) {
  if (t.type != DType::F32) fail(where, ": ", t.name, " is ", dtype_name(t.type), ", not F32");
  std::vector<float> v(static_cast<size_t>(t.n_elements()));
  std::memcpy(v.data(), t.data, v.size() * sizeof(float));
  for (float x : v)
    if (!std::isfinite(x) || x < 0.0f) fail(where, ": ", t.name, " holds ", x, " (a sum of squares or a count)");
  return v;
}

}  // namespace

const std::vector<float>* ImportanceMatrix::find(const std::string& name, int64_t cols) const {
  const auto it = mean_squares.find(name);
  if (it == mean_squares.end()) return nullptr;
  if (static_cast<int64_t>(it->second.size()) != cols)
    fail("imatrix: ", name, " has ", it->second.size(), " columns in the importance matrix and ", cols,
         " in the model (a file made for another model)");
  return &it->second;
}

ImportanceMatrix read_importance_matrix(const std::string& path) {
  const std::string where = "imatrix " + path;
  std::optional<gguf::File> opened;
  try {
    opened.emplace(gguf::File::open(path));
  } catch (const Error& e) {
    fail(where, ": ", e.what(),
         " (llama.cpp's older .dat files: convert with `llama-imatrix --in-file FILE.dat -o FILE.gguf`)");
  }
  const gguf::File& f = *opened;
  if (f.get_string("general.type") != "imatrix")
    fail(where, " is not an importance matrix (general.type '", f.get_string("general.type").value_or(""),
         "', expected 'imatrix')");
  ImportanceMatrix m;
  m.datasets = f.get_string_array("imatrix.datasets").value_or(std::vector<std::string>{});
  m.chunks = static_cast<int64_t>(f.get_u64("imatrix.chunk_count").value_or(0));
  for (const gguf::TensorInfo& t : f.tensors()) {
    std::string name = t.name;
    if (strip(name, kCounts)) {
      if (!f.find_tensor(name + std::string(kSums))) fail(where, ": ", t.name, " has no ", name, kSums);
      continue;
    }
    if (!strip(name, kSums)) fail(where, ": ", t.name, " is neither a sum of squares (", kSums, ") nor a count");
    const gguf::TensorInfo* c = f.find_tensor(name + std::string(kCounts));
    if (!c) fail(where, ": ", t.name, " has no ", name, kCounts);
    const int64_t experts = t.ne.size() > 1 ? t.ne[1] : 1;
    if (t.ne.size() > 2 || experts != 1 || c->n_elements() != 1)
      fail(where, ": ", t.name, " has shape ", gguf::shape_text(t.ne), " and its count ", gguf::shape_text(c->ne),
           "; kestrel reads one matrix's statistics per name (no experts)");
    std::vector<float> sums = f32_values(t, where);
    const float count = f32_values(*c, where)[0];
    for (float& s : sums) s = count > 0.0f ? s / count : 1.0f;
    m.mean_squares.emplace(std::move(name), std::move(sums));
  }
  if (m.mean_squares.empty()) fail(where, " holds no statistics");
  return m;
}

}  // namespace kestrel
