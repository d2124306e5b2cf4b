// GGUF v3 writer. Values are checked when they are set (so the error names the
// key at the call site), tensors when they are added; writing only lays out.
// Layout: header, metadata, tensor infos, zero padding to the alignment, then
// each tensor's bytes in add order, each padded with zeros to the alignment.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/wire.h"

namespace kestrel::gguf {
namespace {

constexpr std::string_view kWho = "gguf writer";

// Throws (without the key; the caller adds it) unless `v` can be written as
// its declared type: payload of the right kind, integers in range, f32 values
// representable, array elements all of the declared element type.
void check_value(const Value& v, int depth) {
  const auto max_unsigned = [&]() -> uint64_t {
    switch (v.type) {
      case ValueType::U8: return UINT8_MAX;
      case ValueType::U16: return UINT16_MAX;
      case ValueType::U32: return UINT32_MAX;
      default: return UINT64_MAX;
    }
  };
  const auto signed_range = [&]() -> std::pair<int64_t, int64_t> {
    switch (v.type) {
      case ValueType::I8: return {INT8_MIN, INT8_MAX};
      case ValueType::I16: return {INT16_MIN, INT16_MAX};
      case ValueType::I32: return {INT32_MIN, INT32_MAX};
      default: return {INT64_MIN, INT64_MAX};
    }
  };
  switch (v.type) {
    case ValueType::U8:
    case ValueType::U16:
    case ValueType::U32:
    case ValueType::U64: {
      if (!std::holds_alternative<uint64_t>(v.data)) fail("malformed ", value_type_name(v.type), " value");
      const uint64_t u = std::get<uint64_t>(v.data);
      if (u > max_unsigned()) fail("value ", u, " does not fit ", value_type_name(v.type));
      return;
    }
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64: {
      if (!std::holds_alternative<int64_t>(v.data)) fail("malformed ", value_type_name(v.type), " value");
      const int64_t i = std::get<int64_t>(v.data);
      const auto [lo, hi] = signed_range();
      if (i < lo || i > hi) fail("value ", i, " does not fit ", value_type_name(v.type));
      return;
    }
    case ValueType::F32:
    case ValueType::F64: {
      if (!std::holds_alternative<double>(v.data)) fail("malformed ", value_type_name(v.type), " value");
      const double d = std::get<double>(v.data);
      if (v.type == ValueType::F32 && std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max())
        fail("value ", d, " does not fit f32");
      return;
    }
    case ValueType::BOOL: v.as_bool(); return;
    case ValueType::STRING: v.as_string(); return;
    case ValueType::ARRAY: {
      if (depth >= kMaxArrayDepth) fail("arrays nested deeper than ", kMaxArrayDepth, " levels");
      const Array& a = v.as_array();
      if (!wire::value_type_from_id(static_cast<uint32_t>(a.elem_type)))
        fail("unknown array element type ", static_cast<uint32_t>(a.elem_type));
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (a.items[i].type != a.elem_type)
          fail("array element ", i, " is ", value_type_name(a.items[i].type), " but the array holds ",
               value_type_name(a.elem_type));
        check_value(a.items[i], depth + 1);
      }
      return;
    }
  }
  fail("unknown value type ", static_cast<uint32_t>(v.type));
}

// Little-endian byte buffer for the header part.
struct Bytes {
  std::vector<uint8_t> b;
  void append(const void* p, size_t n) {
    const size_t at = b.size();
    b.resize(at + n);
    if (n > 0) std::memcpy(b.data() + at, p, n);
  }
  template <class T>
  void put(T v) {
    append(&v, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    append(s.data(), s.size());
  }
};

// `v` has passed check_value.
void encode_value(Bytes& out, const Value& v) {
  switch (v.type) {
    case ValueType::U8: out.put<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(v.data))); return;
    case ValueType::U16: out.put<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(v.data))); return;
    case ValueType::U32: out.put<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(v.data))); return;
    case ValueType::U64: out.put<uint64_t>(std::get<uint64_t>(v.data)); return;
    case ValueType::I8: out.put<int8_t>(static_cast<int8_t>(std::get<int64_t>(v.data))); return;
    case ValueType::I16: out.put<int16_t>(static_cast<int16_t>(std::get<int64_t>(v.data))); return;
    case ValueType::I32: out.put<int32_t>(static_cast<int32_t>(std::get<int64_t>(v.data))); return;
    case ValueType::I64: out.put<int64_t>(std::get<int64_t>(v.data)); return;
    case ValueType::F32: out.put<float>(static_cast<float>(std::get<double>(v.data))); return;
    case ValueType::F64: out.put<double>(std::get<double>(v.data)); return;
    case ValueType::BOOL: out.put<uint8_t>(std::get<bool>(v.data) ? 1 : 0); return;
    case ValueType::STRING: out.put_string(std::get<std::string>(v.data)); return;
    case ValueType::ARRAY: {
      const Array& a = std::get<Array>(v.data);
      out.put<uint32_t>(static_cast<uint32_t>(a.elem_type));
      out.put<uint64_t>(a.items.size());
      for (const Value& item : a.items) encode_value(out, item);
      return;
    }
  }
}

using Sink = std::function<void(const uint8_t*, size_t)>;

}  // namespace

struct Writer::Impl {
  struct Pending {
    TensorInfo info;  // offset filled in by layout()
    std::vector<uint8_t> bytes;
    bool streamed = false;  // bytes come from the FillFn
  };
  size_t alignment = kDefaultAlignment;
  std::vector<std::pair<std::string, Value>> metadata;
  std::vector<Pending> tensors;
  std::map<std::string, size_t, std::less<>> tensor_index;

  void add(std::string name, DType type, std::vector<int64_t> ne, std::vector<uint8_t> bytes, bool streamed);
  std::vector<TensorInfo> layout() const;
  // Magic through tensor infos, zero padded to the alignment.
  std::vector<uint8_t> header(const std::vector<TensorInfo>& infos) const;
  void emit(const Sink& sink, const FillFn& fill) const;
};

void Writer::Impl::add(std::string name, DType type, std::vector<int64_t> ne, std::vector<uint8_t> bytes,
                       bool streamed) {
  wire::check_tensor_name(kWho, name);
  if (tensor_index.count(name)) fail(kWho, ": duplicate tensor name '", name, "'");
  const size_t nbytes = wire::tensor_nbytes(kWho, name, type, ne);
  if (!streamed && bytes.size() != nbytes)
    fail(kWho, ": tensor '", name, "' has ", bytes.size(), " bytes, expected ", nbytes, " (", dtype_name(type),
         " ", wire::format_ne(ne), ")");
  Pending p;
  p.info.name = name;
  p.info.type = type;
  p.info.ne = std::move(ne);
  p.info.nbytes = nbytes;
  p.bytes = std::move(bytes);
  p.streamed = streamed;
  tensor_index.emplace(std::move(name), tensors.size());
  tensors.push_back(std::move(p));
}

// Offsets relative to the data section: each tensor starts aligned.
std::vector<TensorInfo> Writer::Impl::layout() const {
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  uint64_t running = 0;
  for (const auto& p : tensors) {
    TensorInfo t = p.info;
    t.offset = running;
    const auto next = wire::align_up(running + t.nbytes, alignment);
    if (!next || running + t.nbytes < running) fail(kWho, ": total tensor data exceeds 2^64 bytes");
    running = *next;
    infos.push_back(std::move(t));
  }
  return infos;
}

std::vector<uint8_t> Writer::Impl::header(const std::vector<TensorInfo>& infos) const {
  Bytes out;
  out.append(wire::kMagic, sizeof wire::kMagic);
  out.put<uint32_t>(wire::kWriteVersion);
  out.put<uint64_t>(infos.size());
  out.put<uint64_t>(metadata.size());
  for (const auto& [key, value] : metadata) {
    out.put_string(key);
    out.put<uint32_t>(static_cast<uint32_t>(value.type));
    encode_value(out, value);
  }
  for (const TensorInfo& t : infos) {
    out.put_string(t.name);
    out.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) out.put<uint64_t>(static_cast<uint64_t>(d));
    out.put<uint32_t>(static_cast<uint32_t>(t.type));
    out.put<uint64_t>(t.offset);
  }
  out.b.resize(static_cast<size_t>(*wire::align_up(out.b.size(), alignment)), 0);
  return std::move(out.b);
}

void Writer::Impl::emit(const Sink& sink, const FillFn& fill) const {
  for (const auto& p : tensors)
    if (p.streamed && !fill)
      fail(kWho, ": tensor '", p.info.name, "' was declared with add_tensor_info but no fill callback was given");
  const std::vector<TensorInfo> infos = layout();
  const std::vector<uint8_t> head = header(infos);
  sink(head.data(), head.size());

  const std::vector<uint8_t> zeros(alignment, 0);
  std::vector<uint8_t> chunk;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& p = tensors[i];
    const TensorInfo& t = infos[i];
    if (!p.streamed) {
      if (!p.bytes.empty()) sink(p.bytes.data(), p.bytes.size());
    } else if (t.nbytes > 0) {
      // nbytes > 0 means ne[0] > 0 and at least one row.
      const int64_t rows = t.n_elements() / t.ne[0];
      const size_t row = t.nbytes / static_cast<size_t>(rows);
      const int64_t per_chunk = static_cast<int64_t>(std::max<size_t>(1, Writer::kStreamChunkBytes / row));
      for (int64_t r0 = 0; r0 < rows; r0 += per_chunk) {
        const int64_t n = std::min(per_chunk, rows - r0);
        chunk.assign(static_cast<size_t>(n) * row, 0);
        fill(TensorChunk{i, &t, r0, n, std::span<uint8_t>(chunk)});
        sink(chunk.data(), chunk.size());
      }
    }
    const size_t pad = static_cast<size_t>(*wire::align_up(t.nbytes, alignment) - t.nbytes);
    if (pad > 0) sink(zeros.data(), pad);
  }
}

Writer::Writer() : impl_(std::make_unique<Impl>()) {}
Writer::Writer(Writer&&) noexcept = default;
Writer& Writer::operator=(Writer&&) noexcept = default;
Writer::~Writer() = default;

void Writer::set_alignment(size_t alignment) {
  if (!wire::is_pow2(alignment) || alignment > UINT32_MAX)
    fail(kWho, ": alignment ", alignment, " is not a nonzero power of two that fits u32");
  impl_->alignment = alignment;
  auto& md = impl_->metadata;
  for (auto& [k, v] : md)
    if (k == wire::kAlignmentKey) {
      v = Value::u32(static_cast<uint32_t>(alignment));
      return;
    }
  if (alignment != kDefaultAlignment)
    md.emplace_back(std::string(wire::kAlignmentKey), Value::u32(static_cast<uint32_t>(alignment)));
}

size_t Writer::alignment() const { return impl_->alignment; }

void Writer::set(std::string key, Value value) {
  try {
    check_value(value, 0);
  } catch (const Error& e) {
    fail(kWho, ": metadata key '", key, "': ", e.what());
  }
  if (key == wire::kAlignmentKey) impl_->alignment = wire::check_alignment_value(kWho, value);
  for (auto& [k, v] : impl_->metadata)
    if (k == key) {
      v = std::move(value);
      return;
    }
  impl_->metadata.emplace_back(std::move(key), std::move(value));
}

void Writer::set_u32(std::string key, uint32_t v) { set(std::move(key), Value::u32(v)); }
void Writer::set_i32(std::string key, int32_t v) { set(std::move(key), Value::i32(v)); }
void Writer::set_u64(std::string key, uint64_t v) { set(std::move(key), Value::u64(v)); }
void Writer::set_f32(std::string key, float v) { set(std::move(key), Value::f32(v)); }
void Writer::set_bool(std::string key, bool v) { set(std::move(key), Value::boolean(v)); }
void Writer::set_string(std::string key, std::string v) { set(std::move(key), Value::string(std::move(v))); }

void Writer::set_string_array(std::string key, const std::vector<std::string>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back(Value::string(s));
  set(std::move(key), Value::array(ValueType::STRING, std::move(items)));
}

void Writer::set_f32_array(std::string key, const std::vector<float>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (float x : v) items.push_back(Value::f32(x));
  set(std::move(key), Value::array(ValueType::F32, std::move(items)));
}

void Writer::set_i32_array(std::string key, const std::vector<int32_t>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (int32_t x : v) items.push_back(Value::i32(x));
  set(std::move(key), Value::array(ValueType::I32, std::move(items)));
}

void Writer::copy_metadata(const File& from) {
  for (const auto& [k, v] : from.metadata()) set(k, v);
}

const std::vector<std::pair<std::string, Value>>& Writer::metadata() const { return impl_->metadata; }

bool Writer::remove(std::string_view key) {
  auto& md = impl_->metadata;
  for (auto it = md.begin(); it != md.end(); ++it)
    if (it->first == key) {
      md.erase(it);
      if (key == wire::kAlignmentKey) impl_->alignment = kDefaultAlignment;
      return true;
    }
  return false;
}

void Writer::add_tensor(std::string name, DType type, std::vector<int64_t> ne, std::vector<uint8_t> bytes) {
  impl_->add(std::move(name), type, std::move(ne), std::move(bytes), false);
}

void Writer::add_tensor_info(std::string name, DType type, std::vector<int64_t> ne) {
  impl_->add(std::move(name), type, std::move(ne), {}, true);
}

std::vector<TensorInfo> Writer::tensor_infos() const { return impl_->layout(); }

std::vector<uint8_t> Writer::to_bytes(const FillFn& fill) const {
  std::vector<uint8_t> out;
  impl_->emit([&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); }, fill);
  return out;
}

void Writer::write(const std::string& path, const FillFn& fill) const {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) fail(kWho, ": cannot create '", path, "': ", std::strerror(errno));
  try {
    impl_->emit(
        [&](const uint8_t* p, size_t n) {
          if (std::fwrite(p, 1, n, f) != n) fail(kWho, ": writing '", path, "' failed: ", std::strerror(errno));
        },
        fill);
    if (std::fflush(f) != 0) fail(kWho, ": writing '", path, "' failed: ", std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::remove(path.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    std::remove(path.c_str());
    fail(kWho, ": closing '", path, "' failed: ", std::strerror(errno));
  }
}

}  // namespace kestrel::gguf
