#pragma once
// Sidecar files: data learnt for one model file (CQ codebooks, TEAL
// thresholds), kept next to it as llama.cpp users keep an imatrix.
//
// The fingerprint a sidecar records of the model it was made for: the file size and an FNV-1a hash of every tensor's name, type,
// shape, offset and first 64 bytes. It reads one page per tensor, not the
// weights, and tells apart two quantizations, two fine-tunes of one layout, or
// a re-downloaded file of another size. Two files that differ only past the
// first 64 bytes of every tensor are not told apart.
#include <cstdint>
#include <string>
#include <string_view>

namespace kestrel::gguf {

class File;

struct Fingerprint {
  uint64_t file_bytes = 0;
  uint64_t tensor_hash = 0;
  bool operator==(const Fingerprint&) const = default;
};

Fingerprint fingerprint(const File& file);

// Opens a sidecar and checks its general.architecture. Throws kestrel::Error
// starting "<kind> sidecar PATH": not a GGUF or truncated (the reader's
// reason), or "is not a <kind> sidecar" naming both architectures.
File open_sidecar(const std::string& path, std::string_view kind, std::string_view architecture);

// MODEL.gguf -> MODEL.<kind>.gguf in the model's directory; a name without
// the .gguf suffix gets ".<kind>.gguf" appended.
std::string default_sidecar_path(const std::string& model_path, std::string_view kind);

}  // namespace kestrel::gguf
