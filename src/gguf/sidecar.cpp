#include "gguf/sidecar.h"

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "core/hash.h"
#include "gguf/gguf.h"

namespace kestrel::gguf {
namespace {

// Bytes of each tensor's data the hash reads.
constexpr size_t kSampledBytes = 64;

}  // namespace

Fingerprint fingerprint(const File& file) {
  Fnv1a h;
  for (const TensorInfo& t : file.tensors()) {
    h.bytes(t.name.data(), t.name.size() + 1);  // the terminator keeps "ab"+"c" apart from "a"+"bc"
    h.u64(static_cast<uint64_t>(t.type));
    h.u64(t.ne.size());
    for (int64_t ne : t.ne) h.u64(static_cast<uint64_t>(ne));
    h.u64(t.offset);
    // A page of each tensor at most: tells apart two files of one layout
    // (fine-tunes, re-quantizations with other data) without reading the weights.
    if (t.data) h.bytes(t.data, std::min<size_t>(t.nbytes, kSampledBytes));
  }
  return Fingerprint{file.file_size(), h.h};
}

File open_sidecar(const std::string& path, std::string_view kind, std::string_view architecture) {
  const std::string where = std::string(kind) + " sidecar " + path;
  std::optional<File> opened;
  try {
    opened.emplace(File::open(path));
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  const auto arch = opened->get_string("general.architecture");
  if (arch != architecture)
    fail(where, " is not a ", kind, " sidecar (general.architecture '", arch.value_or(""), "', expected '",
         architecture, "')");
  return std::move(*opened);
}

std::string default_sidecar_path(const std::string& model_path, std::string_view kind) {
  constexpr std::string_view kSuffix = ".gguf";
  std::string base = model_path;
  if (base.size() > kSuffix.size() && base.compare(base.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
    base.resize(base.size() - kSuffix.size());
  return base + "." + std::string(kind) + ".gguf";
}

}  // namespace kestrel::gguf
