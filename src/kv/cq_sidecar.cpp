// The CQ sidecar GGUF: write, read and check (kv/cq_sidecar.h).
#include "kv/cq_sidecar.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <sstream>
#include <tuple>
#include <utility>

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/sidecar.h"
#include "kv/cq_whitening.h"

namespace kestrel {
namespace {

constexpr const char* kArchitecture = "kestrel-cq";

// kv: "k", "v" (codebooks), "kw" or "vw" (their whitening).
std::string tensor_name(std::string_view kv, int layer, int head) {
  return "cq." + std::string(kv) + ".blk." + std::to_string(layer) + ".head." + std::to_string(head);
}

// ggml order of a whitening tensor: [w, w, blocks] (w = c stages; one block per group without stages).
std::vector<int64_t> whitening_shape(const CqCodebook& book) { return {book.width(), book.width(), book.blocks()}; }

// ggml order: [n_codes, w, groups].
std::vector<int64_t> tensor_shape(const CqCodebook& book) { return {book.spec.n_codes(), book.width(), book.groups()}; }

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
  const gguf::Fingerprint fp = gguf::fingerprint(model);
  m.file_bytes = fp.file_bytes;
  m.tensor_hash = fp.tensor_hash;
  return m;
}

CqCodebooks make_cq_codebooks(CqSpec spec, const CqModelInfo& model, int stages) {
  CqCodebooks books{spec, model, {}, {}};
  const size_t n = static_cast<size_t>(model.n_layer) * model.n_kv_head;
  books.k.assign(n, make_cq_codebook(spec, model.k_head_dim, stages));
  books.v.assign(n, make_cq_codebook(spec, model.v_head_dim, stages));
  return books;
}

size_t CqCodebooks::bytes() const {
  size_t n = 0;
  for (const auto* list : {&k, &v})
    for (const CqCodebook& b : *list) n += b.bytes();
  return n;
}

CqCodebooks mixed_cq_codebooks(CqCodebooks keys, CqCodebooks values) {
  if (!(keys.model == values.model))
    fail("CQ codebooks: the keys' and the values' books were made for different models");
  keys.v = std::move(values.v);
  keys.exact_layers = std::max(keys.exact_layers, values.exact_layers);
  return keys;
}

gguf::Writer cq_sidecar_writer(const CqCodebooks& books) {
  if (!(books.value_spec() == books.spec))
    fail("CQ sidecar: ", cq_spec_name(books.spec), " keys with ", cq_spec_name(books.value_spec()),
         " values are two sidecars, not one");
  const CqModelInfo& m = books.model;
  gguf::Writer w;
  const bool k_whitened = !books.k.empty() && books.k.front().whitened();
  const bool v_whitened = !books.v.empty() && books.v.front().whitened();
  const int stages = books.k.empty() ? 1 : books.k.front().stages;
  w.set_string("general.architecture", kArchitecture);
  // The oldest version that holds the file: builds that predate a version read the files that do not need it.
  w.set_u32("kestrel.cq.version", stages > 1 ? 4 : k_whitened || v_whitened ? 3 : books.exact_layers > 0 ? 2 : 1);
  if (books.exact_layers > 0) w.set_u32("kestrel.cq.exact_layers", static_cast<uint32_t>(books.exact_layers));
  if (stages > 1) w.set_u32("kestrel.cq.stages", static_cast<uint32_t>(stages));
  w.set_u32("kestrel.cq.channels_per_group", static_cast<uint32_t>(books.spec.channels_per_group));
  w.set_u32("kestrel.cq.bits", static_cast<uint32_t>(books.spec.bits));
  w.set_string("kestrel.cq.model.architecture", m.architecture);
  w.set_u32("kestrel.cq.model.block_count", static_cast<uint32_t>(m.n_layer));
  w.set_u32("kestrel.cq.model.head_count_kv", static_cast<uint32_t>(m.n_kv_head));
  w.set_u32("kestrel.cq.model.key_length", static_cast<uint32_t>(m.k_head_dim));
  w.set_u32("kestrel.cq.model.value_length", static_cast<uint32_t>(m.v_head_dim));
  w.set_u64("kestrel.cq.model.file_bytes", m.file_bytes);
  w.set_u64("kestrel.cq.model.tensor_hash", m.tensor_hash);
  auto add = [&](std::string_view kv, int layer, int head, const std::vector<float>& data, std::vector<int64_t> shape) {
    w.add_tensor(tensor_name(kv, layer, head), DType::F32, std::move(shape), gguf::bytes_of<float>(data));
  };
  for (int layer = 0; layer < m.n_layer; ++layer)
    for (int head = 0; head < m.n_kv_head; ++head) {
      const CqCodebook& k = books.key(layer, head);
      const CqCodebook& v = books.value(layer, head);
      if (k.stages != stages || v.stages != stages)
        fail("CQ sidecar: layer ", layer, " head ", head, "'s residual stages differ from layer 0 head 0's");
      // F32 in the file: the F16 values widened (exactly; E for a whitened book), so a file loads back bit for bit.
      add("k", layer, head, cq_stored_centroids_f32(k), tensor_shape(k));
      add("v", layer, head, cq_stored_centroids_f32(v), tensor_shape(v));
      for (const auto& [name, book, all] : {std::tuple{"kw", &k, k_whitened}, std::tuple{"vw", &v, v_whitened}}) {
        if (book->whitened() != all)
          fail("CQ sidecar: layer ", layer, " head ", head, "'s ", name, " whitening differs from layer 0 head 0's");
        if (all) add(name, layer, head, book->whitening, whitening_shape(*book));
      }
    }
  return w;
}

void save_cq_codebooks(const std::string& path, const CqCodebooks& books) { cq_sidecar_writer(books).write(path); }

CqCodebooks load_cq_codebooks(const std::string& path, const CqModelInfo& model) {
  const std::string where = "CQ sidecar " + path;
  const gguf::File f = gguf::open_sidecar(path, "CQ", kArchitecture);
  const auto version = f.get_u64("kestrel.cq.version");
  if (!version) fail(where, ": no kestrel.cq.version");
  if (*version < 1 || *version > kCqSidecarVersion)
    fail(where, ": unknown version ", *version, " (this build reads versions 1 to ", kCqSidecarVersion, ")");

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

  // Version 4: residual stages (kv/cq_codebook.h), the same for K and V.
  const uint64_t stages = *version >= 4 ? f.get_u64("kestrel.cq.stages").value_or(1) : 1;
  CqCodebooks books;
  try {
    if (stages < 1 || stages > 64) fail("CQ: ", stages, " residual stages (1 to 64)");
    books = make_cq_codebooks(spec, model, static_cast<int>(stages));
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  if (*version >= 2) {
    const uint64_t exact = f.get_u64("kestrel.cq.exact_layers").value_or(0);
    if (exact > static_cast<uint64_t>(model.n_layer))
      fail(where, ": ", exact, " exact layers, the model has ", model.n_layer);
    books.exact_layers = static_cast<int>(exact);
  }
  // Versions 2 and 3 may whiten the keys and the values: all of them or none.
  const bool k_whitened = *version >= 2 && f.find_tensor(tensor_name("kw", 0, 0)) != nullptr;
  const bool v_whitened = *version >= 2 && f.find_tensor(tensor_name("vw", 0, 0)) != nullptr;
  const size_t expected_tensors = (2 + int{k_whitened} + int{v_whitened}) * books.k.size();
  if (f.tensors().size() != expected_tensors)
    fail(where, ": ", f.tensors().size(), " tensors, expected ", expected_tensors, " (K and V",
         k_whitened ? ", K's whitening" : "", v_whitened ? ", V's whitening" : "", " of ", model.n_layer, " layers x ",
         model.n_kv_head, " kv heads)");
  auto read = [&](std::string_view kv, int layer, int head, std::vector<float>& to, const std::vector<int64_t>& want) {
    const std::string name = tensor_name(kv, layer, head);
    const gguf::TensorInfo* t = f.find_tensor(name);
    if (!t) fail(where, ": missing tensor ", name);
    if (t->type != DType::F32 || t->ne != want)
      fail(where, ": tensor ", name, " is ", dtype_name(t->type), " ", gguf::shape_text(t->ne), ", expected ",
           dtype_name(DType::F32), " ", gguf::shape_text(want), " (", cq_spec_name(spec), ")");
    std::memcpy(to.data(), t->data, to.size() * sizeof(float));
  };
  std::vector<float> centroids;  // one codebook's, as filed
  for (int layer = 0; layer < model.n_layer; ++layer)
    for (int head = 0; head < model.n_kv_head; ++head) {
      CqCodebook& k = books.k[books.index(layer, head)];
      CqCodebook& v = books.v[books.index(layer, head)];
      // The whitening first: version 2 files C, which the book holds as W C.
      for (const auto& [name, book, all] : {std::tuple{"kw", &k, k_whitened}, std::tuple{"vw", &v, v_whitened}}) {
        if (!all) continue;
        const int c = book->width();
        book->whitening.resize(static_cast<size_t>(book->blocks()) * c * c);  // read whole, then checked
        read(name, layer, head, book->whitening, whitening_shape(*book));
        const std::string what = where + ": tensor " + tensor_name(name, layer, head);
        for (int b = 0; b < book->blocks(); ++b)
          check_cq_whitening({book->block_whitening(b), static_cast<size_t>(c) * c}, c, what.c_str());
      }
      for (const auto& [name, book] : {std::pair{"k", &k}, std::pair{"v", &v}}) {
        centroids.resize(book->centroids.size());
        read(name, layer, head, centroids, tensor_shape(*book));
        try {  // rounded to the F16 the cache holds
          if (*version >= 3)
            set_cq_stored_centroids(*book, centroids);
          else
            set_cq_centroids(*book, centroids);
        } catch (const Error& e) {
          fail(where, ": tensor ", tensor_name(name, layer, head), ": ", e.what());
        }
      }
    }
  return books;
}

CqHeldBytes cq_sidecar_held_bytes(const std::string& path) {
  const gguf::File f = gguf::open_sidecar(path, "CQ", kArchitecture);
  CqHeldBytes held;
  for (const gguf::TensorInfo& t : f.tensors()) {
    const auto n = static_cast<size_t>(t.n_elements());
    const std::string_view name = t.name;
    if (name.starts_with("cq.k.")) held.keys += n * sizeof(uint16_t);
    if (name.starts_with("cq.v.")) held.values += n * sizeof(uint16_t);
    if (name.starts_with("cq.kw.")) held.keys += n * sizeof(float);
    if (name.starts_with("cq.vw.")) held.values += n * sizeof(float);
  }
  return held;
}

std::string default_cq_sidecar_path(const std::string& model_path, CqSpec spec) {
  return gguf::default_sidecar_path(model_path, cq_spec_name(spec));
}

std::string cq_sidecar_path(const std::string& model_path, CqSpec spec, const std::string& override_path) {
  return override_path.empty() ? default_cq_sidecar_path(model_path, spec) : override_path;
}

CqSidecarPaths cq_sidecar_paths(const std::string& model_path, CqSpec k_spec, CqSpec v_spec,
                                const std::string& keys_override, const std::string& values_override) {
  CqSidecarPaths p{cq_sidecar_path(model_path, k_spec, keys_override), values_override};
  if (p.values.empty()) p.values = k_spec == v_spec ? p.keys : default_cq_sidecar_path(model_path, v_spec);
  return p;
}

}  // namespace kestrel
