// The CQ sidecar GGUF: write, read and check (kv/cq_sidecar.h).
#include "kv/cq_sidecar.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/hash.h"
#include "gguf/gguf.h"

namespace kestrel {
namespace {

constexpr const char* kArchitecture = "kestrel-cq";
// Bytes of each tensor's data the fingerprint hashes.
constexpr size_t kSampledBytes = 64;

std::string tensor_name(char kv, int layer, int head) {
  return std::string("cq.") + kv + ".blk." + std::to_string(layer) + ".head." + std::to_string(head);
}

// ggml order: [n_codes, c, groups].
std::vector<int64_t> tensor_shape(CqSpec spec, int head_dim) {
  return {spec.n_codes(), spec.channels_per_group, spec.groups(head_dim)};
}

int read_dim(const gguf::File& f, const std::string& key, int fallback) {
  const auto v = f.get_u64(key);
  return v ? static_cast<int>(*v) : fallback;
}

// "field X in the sidecar, Y in this model; " for each difference.
template <class T>
void compare(std::ostringstream& diff, const char* field, const T& sidecar, const T& model) {
  if (!(sidecar == model))
    diff << (diff.tellp() > 0 ? "; " : "") << field << " " << sidecar << " (sidecar) vs " << model << " (model)";
}

}  // namespace

CqModelInfo cq_model_info(const gguf::File& model) {
  CqModelInfo m;
  m.architecture = model.require_string("general.architecture");
  const std::string p = m.architecture + ".";
  m.n_layer = static_cast<int>(model.require_u64(p + "block_count"));
  const int n_head = static_cast<int>(model.require_u64(p + "attention.head_count"));
  const int n_embd = static_cast<int>(model.require_u64(p + "embedding_length"));
  m.n_kv_head = read_dim(model, p + "attention.head_count_kv", n_head);
  m.k_head_dim = read_dim(model, p + "attention.key_length", n_head > 0 ? n_embd / n_head : 0);
  m.v_head_dim = read_dim(model, p + "attention.value_length", m.k_head_dim);
  m.file_bytes = model.file_size();
  Fnv1a h;
  for (const gguf::TensorInfo& t : model.tensors()) {
    h.bytes(t.name.data(), t.name.size() + 1);  // the terminator keeps "ab"+"c" apart from "a"+"bc"
    h.u64(static_cast<uint64_t>(t.type));
    h.u64(t.ne.size());
    for (int64_t ne : t.ne) h.u64(static_cast<uint64_t>(ne));
    h.u64(t.offset);
    // A page of each tensor at most: tells apart two files of one layout
    // (fine-tunes, re-quantizations with other data) without reading the weights.
    if (t.data) h.bytes(t.data, std::min<size_t>(t.nbytes, kSampledBytes));
  }
  m.tensor_hash = h.h;
  return m;
}

CqCodebooks make_cq_codebooks(CqSpec spec, const CqModelInfo& model) {
  CqCodebooks books{spec, model, {}, {}};
  const size_t n = static_cast<size_t>(model.n_layer) * model.n_kv_head;
  books.k.assign(n, make_cq_codebook(spec, model.k_head_dim));
  books.v.assign(n, make_cq_codebook(spec, model.v_head_dim));
  return books;
}

gguf::Writer cq_sidecar_writer(const CqCodebooks& books) {
  const CqModelInfo& m = books.model;
  gguf::Writer w;
  w.set_string("general.architecture", kArchitecture);
  w.set_u32("kestrel.cq.version", kCqSidecarVersion);
  w.set_u32("kestrel.cq.channels_per_group", static_cast<uint32_t>(books.spec.channels_per_group));
  w.set_u32("kestrel.cq.bits", static_cast<uint32_t>(books.spec.bits));
  w.set_string("kestrel.cq.model.architecture", m.architecture);
  w.set_u32("kestrel.cq.model.block_count", static_cast<uint32_t>(m.n_layer));
  w.set_u32("kestrel.cq.model.head_count_kv", static_cast<uint32_t>(m.n_kv_head));
  w.set_u32("kestrel.cq.model.key_length", static_cast<uint32_t>(m.k_head_dim));
  w.set_u32("kestrel.cq.model.value_length", static_cast<uint32_t>(m.v_head_dim));
  w.set_u64("kestrel.cq.model.file_bytes", m.file_bytes);
  w.set_u64("kestrel.cq.model.tensor_hash", m.tensor_hash);
  auto add = [&](char kv, int layer, int head, const CqCodebook& book) {
    std::vector<uint8_t> bytes(book.centroids.size() * sizeof(float));
    std::memcpy(bytes.data(), book.centroids.data(), bytes.size());
    w.add_tensor(tensor_name(kv, layer, head), DType::F32, tensor_shape(book.spec, book.head_dim), std::move(bytes));
  };
  for (int layer = 0; layer < m.n_layer; ++layer)
    for (int head = 0; head < m.n_kv_head; ++head) {
      add('k', layer, head, books.key(layer, head));
      add('v', layer, head, books.value(layer, head));
    }
  return w;
}

void save_cq_codebooks(const std::string& path, const CqCodebooks& books) { cq_sidecar_writer(books).write(path); }

CqCodebooks load_cq_codebooks(const std::string& path, const CqModelInfo& model) {
  const std::string where = "CQ sidecar " + path;
  std::optional<gguf::File> opened;
  try {
    opened.emplace(gguf::File::open(path));
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  const gguf::File& f = *opened;
  const auto arch = f.get_string("general.architecture");
  if (arch != kArchitecture)
    fail(where, " is not a CQ sidecar (general.architecture '", arch.value_or(""), "', expected '", kArchitecture,
         "')");
  const auto version = f.get_u64("kestrel.cq.version");
  if (!version) fail(where, ": no kestrel.cq.version");
  if (*version != kCqSidecarVersion)
    fail(where, ": unknown version ", *version, " (this build reads version ", kCqSidecarVersion, ")");

  CqModelInfo made_for;
  try {
    made_for.architecture = f.require_string("kestrel.cq.model.architecture");
    made_for.n_layer = static_cast<int>(f.require_u64("kestrel.cq.model.block_count"));
    made_for.n_kv_head = static_cast<int>(f.require_u64("kestrel.cq.model.head_count_kv"));
    made_for.k_head_dim = static_cast<int>(f.require_u64("kestrel.cq.model.key_length"));
    made_for.v_head_dim = static_cast<int>(f.require_u64("kestrel.cq.model.value_length"));
    made_for.file_bytes = f.require_u64("kestrel.cq.model.file_bytes");
    made_for.tensor_hash = f.require_u64("kestrel.cq.model.tensor_hash");
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  std::ostringstream diff;
  compare(diff, "architecture", made_for.architecture, model.architecture);
  compare(diff, "block_count", made_for.n_layer, model.n_layer);
  compare(diff, "head_count_kv", made_for.n_kv_head, model.n_kv_head);
  compare(diff, "key_length", made_for.k_head_dim, model.k_head_dim);
  compare(diff, "value_length", made_for.v_head_dim, model.v_head_dim);
  compare(diff, "file size", made_for.file_bytes, model.file_bytes);
  compare(diff, "tensor table hash", made_for.tensor_hash, model.tensor_hash);
  if (diff.tellp() > 0)
    fail(where, " was made for another model: ", diff.str(), " (run `kestrel calibrate kv` for this one)");

  CqSpec spec;
  spec.channels_per_group = static_cast<int>(f.get_u64("kestrel.cq.channels_per_group").value_or(0));
  spec.bits = static_cast<int>(f.get_u64("kestrel.cq.bits").value_or(0));
  try {
    check_cq_spec(spec, model.k_head_dim);
    check_cq_spec(spec, model.v_head_dim);
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }

  CqCodebooks books = make_cq_codebooks(spec, model);
  const size_t expected_tensors = 2 * books.k.size();
  if (f.tensors().size() != expected_tensors)
    fail(where, ": ", f.tensors().size(), " tensors, expected ", expected_tensors, " (K and V of ", model.n_layer,
         " layers x ", model.n_kv_head, " kv heads)");
  auto read = [&](char kv, int layer, int head, CqCodebook& book) {
    const std::string name = tensor_name(kv, layer, head);
    const gguf::TensorInfo* t = f.find_tensor(name);
    if (!t) fail(where, ": missing tensor ", name);
    const std::vector<int64_t> want = tensor_shape(spec, book.head_dim);
    if (t->type != DType::F32 || t->ne != want)
      fail(where, ": tensor ", name, " is ", dtype_name(t->type), " ", gguf::shape_text(t->ne), ", expected ",
           dtype_name(DType::F32), " ", gguf::shape_text(want), " (", cq_spec_name(spec), ")");
    std::memcpy(book.centroids.data(), t->data, book.centroids.size() * sizeof(float));
  };
  for (int layer = 0; layer < model.n_layer; ++layer)
    for (int head = 0; head < model.n_kv_head; ++head) {
      read('k', layer, head, books.k[books.index(layer, head)]);
      read('v', layer, head, books.v[books.index(layer, head)]);
    }
  return books;
}

std::string default_cq_sidecar_path(const std::string& model_path, CqSpec spec) {
  constexpr std::string_view kSuffix = ".gguf";
  std::string base = model_path;
  if (base.size() > kSuffix.size() && base.compare(base.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
    base.resize(base.size() - kSuffix.size());
  return base + "." + cq_spec_name(spec) + ".gguf";
}

std::string cq_sidecar_path(const std::string& model_path, CqSpec spec, const std::string& override_path) {
  return override_path.empty() ? default_cq_sidecar_path(model_path, spec) : override_path;
}

}  // namespace kestrel
