#pragma once
// GGUF v2/v3 reader (mmap, strict validation) and writer.
// Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
// (string key, u32 type, value), then n_tensors (string name, u32 n_dims,
// u64 ne[n_dims], u32 type, u64 offset), padding to general.alignment, data.
// Every count, length and offset is checked before use; a failure throws
// kestrel::Error naming the problem (key or tensor name, value, file size).
// What the reader enforces: magic; version 2 or 3 (v1 and big-endian files are
// rejected with their own message); counts and lengths bounded by the bytes
// left before anything is reserved; known value types, bool bytes 0/1, arrays
// nested at most kMaxArrayDepth; unique keys; general.alignment a u32 power of
// two; unique, non-empty tensor names of at most kMaxTensorNameBytes; n_dims
// 1..4; every ne in [0, 2^63) with no overflow of element or byte counts; ne[0]
// a multiple of the type's block size; known tensor type ids; offsets aligned;
// every tensor's bytes inside the file; no two tensors overlapping.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/dtype.h"

namespace kestrel {
class MappedFile;
}

namespace kestrel::gguf {

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
std::string_view value_type_name(ValueType t);

struct Value;
// Arrays hold decoded elements; elem_type is the declared element type (nested
// arrays are allowed by the format and kept as Value).
struct Array {
  ValueType elem_type = ValueType::U8;
  std::vector<Value> items;

  bool operator==(const Array& other) const;
};

struct Value {
  ValueType type = ValueType::U8;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> data;

  // Conversions that throw kestrel::Error when the stored type does not fit.
  // Integer getters accept any integer type whose value is in range.
  uint64_t as_u64() const;
  int64_t as_i64() const;
  double as_f64() const;  // any numeric type
  bool as_bool() const;
  const std::string& as_string() const;
  const Array& as_array() const;

  // Exact equality: same declared type and same payload (f32 values compare as
  // doubles, so NaN != NaN as usual).
  bool operator==(const Value& other) const;

  // Builders for each wire type. Integers are stored widened (unsigned in
  // uint64_t, signed in int64_t), floats in double, as the reader stores them.
  static Value u8(uint8_t v) { return {ValueType::U8, uint64_t{v}}; }
  static Value i8(int8_t v) { return {ValueType::I8, int64_t{v}}; }
  static Value u16(uint16_t v) { return {ValueType::U16, uint64_t{v}}; }
  static Value i16(int16_t v) { return {ValueType::I16, int64_t{v}}; }
  static Value u32(uint32_t v) { return {ValueType::U32, uint64_t{v}}; }
  static Value i32(int32_t v) { return {ValueType::I32, int64_t{v}}; }
  static Value u64(uint64_t v) { return {ValueType::U64, v}; }
  static Value i64(int64_t v) { return {ValueType::I64, v}; }
  static Value f32(float v) { return {ValueType::F32, double{v}}; }
  static Value f64(double v) { return {ValueType::F64, v}; }
  static Value boolean(bool v) { return {ValueType::BOOL, v}; }
  static Value string(std::string v) { return {ValueType::STRING, std::move(v)}; }
  static Value array(ValueType elem_type, std::vector<Value> items) {
    return {ValueType::ARRAY, Array{elem_type, std::move(items)}};
  }
};

// Limits the reader enforces beyond the format itself (llama.cpp has the same
// name limit; the depth limit keeps hostile nesting from exhausting the stack).
inline constexpr size_t kMaxTensorNameBytes = 63;
inline constexpr int kMaxArrayDepth = 16;
inline constexpr size_t kDefaultAlignment = 32;

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the innermost (contiguous) dimension
  DType type = DType::F32;
  uint64_t offset = 0;           // relative to the start of the data section
  const uint8_t* data = nullptr;  // points into the mapping (nullptr for writer-side infos)
  size_t nbytes = 0;
  int64_t n_elements() const;
};

// A shape as error messages print it: "[576, 49152]" (ggml order).
std::string shape_text(std::span<const int64_t> ne);

// An opened GGUF file. Move-only; keeps the mapping alive.
class File {
 public:
  // Maps the file read-only and validates header, metadata and tensor table.
  static File open(const std::string& path);
  // Parses a copy of the bytes (fuzzing, tests). Same validation as open().
  // The copy is 64-byte aligned (open()'s mapping is page aligned).
  static File parse(std::span<const uint8_t> bytes);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  uint32_t version() const;
  // True for open(): tensor data lies in a read-only mapping of the file.
  bool mapped() const;
  // open()'s mapping (tensor data can also be read from it with pread), else nullptr.
  const MappedFile* mapping() const;
  size_t alignment() const;
  size_t file_size() const;
  // Start of the tensor data section: the end of the tensor infos rounded up to
  // the alignment (may lie past the end of a file that has no tensors).
  size_t data_offset() const;

  // Metadata in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const;
  const Value* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters: missing key -> nullopt (or the fallback); wrong type -> Error
  // whose message names the key, the expected and the actual type.
  std::optional<uint64_t> get_u64(std::string_view key) const;
  std::optional<int64_t> get_i64(std::string_view key) const;
  std::optional<double> get_f64(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_f32_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;
  // Required variants throw "missing metadata key '...'".
  uint64_t require_u64(std::string_view key) const;
  std::string require_string(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  struct Impl;
  explicit File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One piece of a streamed tensor: rows [row0, row0 + n_rows) of tensor `index`
// (in add order), where a row is ne[0] elements and rows run over ne[1..3].
// `bytes` is n_rows * row_bytes(type, ne[0]) long; the callback fills all of it.
struct TensorChunk {
  size_t index = 0;
  const TensorInfo* info = nullptr;  // name, type, ne, offset, nbytes (data is nullptr)
  int64_t row0 = 0;
  int64_t n_rows = 0;
  std::span<uint8_t> bytes;
};
using FillFn = std::function<void(const TensorChunk&)>;

// The bytes of plain values (floats, ints), as Writer::add_tensor takes them.
template <class T>
std::vector<uint8_t> bytes_of(std::span<const T> values) {
  const auto* p = reinterpret_cast<const uint8_t*>(values.data());
  return std::vector<uint8_t>(p, p + values.size_bytes());
}

// Builds a GGUF v3 file. Tensor bytes are copied in (or streamed by a callback)
// and padded to the alignment; tensors are laid out in add order.
//
// Streaming (files larger than memory): declare tensors with add_tensor_info()
// and call write(path, fill). The writer asks `fill` for each declared tensor in
// add order, in whole-row chunks of about kStreamChunkBytes (at least one row),
// and writes each chunk before asking for the next, so memory stays at one chunk.
// Tensors given bytes with add_tensor() are written from those bytes; the two
// kinds can be mixed.
class Writer {
 public:
  static constexpr size_t kStreamChunkBytes = size_t{8} << 20;

  Writer();
  Writer(Writer&&) noexcept;
  Writer& operator=(Writer&&) noexcept;
  ~Writer();
  // Must be a nonzero power of two that fits u32. Default 32; written as
  // general.alignment (u32) if != 32 or if that key was set explicitly.
  // set("general.alignment", v) is the same call (v must be a U32 value).
  void set_alignment(size_t alignment);
  size_t alignment() const;

  void set(std::string key, Value value);  // replaces an existing key, keeps order
  void set_u32(std::string key, uint32_t v);
  void set_i32(std::string key, int32_t v);
  void set_u64(std::string key, uint64_t v);
  void set_f32(std::string key, float v);
  void set_bool(std::string key, bool v);
  void set_string(std::string key, std::string v);
  void set_string_array(std::string key, const std::vector<std::string>& v);
  void set_f32_array(std::string key, const std::vector<float>& v);
  void set_i32_array(std::string key, const std::vector<int32_t>& v);
  // Copies every metadata pair of another file (quantize keeps the tokenizer etc.).
  void copy_metadata(const File& from);
  const std::vector<std::pair<std::string, Value>>& metadata() const;
  bool remove(std::string_view key);  // true if the key was there

  // ne in ggml order; bytes.size() must equal row_bytes(type, ne[0]) * rows.
  // Names must be unique, non-empty, at most kMaxTensorNameBytes; 1..4 dims,
  // every ne >= 0, ne[0] a multiple of the type's block size.
  void add_tensor(std::string name, DType type, std::vector<int64_t> ne, std::vector<uint8_t> bytes);
  // Declares a tensor whose bytes come from the FillFn given to write().
  void add_tensor_info(std::string name, DType type, std::vector<int64_t> ne);
  // Declared tensors with their final offsets and nbytes (data is nullptr).
  std::vector<TensorInfo> tensor_infos() const;

  // Both throw kestrel::Error if a tensor was declared without bytes and no
  // FillFn is given. write() removes a partly written file on failure.
  void write(const std::string& path, const FillFn& fill = {}) const;
  std::vector<uint8_t> to_bytes(const FillFn& fill = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kestrel::gguf
