// GGUF reader. Everything is validated before File is handed out: header,
// every metadata value, every tensor's shape/type, and the placement of every
// tensor's bytes inside the file. Counts read from the file are bounded by the
// bytes left before anything is reserved, so hostile counts cannot allocate.
#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/wire.h"
#include "platform/mmap.h"

namespace kestrel::gguf {

static_assert(std::endian::native == std::endian::little,
              "the reader copies little-endian fields straight from the file");

namespace {

// Bounds-checked reads over [data, data + size). `what` names the field for
// the message ("metadata pair 3 key", "value of 'general.name'").
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  size_t size() const { return size_; }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view what) {
    const size_t at = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail("gguf: ", what, ": string length ", len, " at offset ", at, " exceeds the ", remaining(),
           " bytes left (file size ", size_, ")");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  void need(size_t n, std::string_view what) const {
    if (n > remaining())
      fail("gguf: truncated file: ", what, " needs ", n, " bytes at offset ", pos_, ", only ",
           remaining(), " left (file size ", size_, ")");
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

Value read_value(Cursor& c, ValueType t, int depth, std::string_view what) {
  switch (t) {
    case ValueType::U8: return Value::u8(c.read<uint8_t>(what));
    case ValueType::I8: return Value::i8(c.read<int8_t>(what));
    case ValueType::U16: return Value::u16(c.read<uint16_t>(what));
    case ValueType::I16: return Value::i16(c.read<int16_t>(what));
    case ValueType::U32: return Value::u32(c.read<uint32_t>(what));
    case ValueType::I32: return Value::i32(c.read<int32_t>(what));
    case ValueType::U64: return Value::u64(c.read<uint64_t>(what));
    case ValueType::I64: return Value::i64(c.read<int64_t>(what));
    case ValueType::F32: return Value::f32(c.read<float>(what));
    case ValueType::F64: return Value::f64(c.read<double>(what));
    case ValueType::BOOL: {
      const size_t at = c.pos();
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1) fail("gguf: ", what, ": bool byte ", int{b}, " at offset ", at, " is neither 0 nor 1");
      return Value::boolean(b != 0);
    }
    case ValueType::STRING: return Value::string(c.read_string(what));
    case ValueType::ARRAY: {
      if (depth >= kMaxArrayDepth) fail("gguf: ", what, ": arrays nested deeper than ", kMaxArrayDepth, " levels");
      const uint32_t id = c.read<uint32_t>(what);
      const auto elem = wire::value_type_from_id(id);
      if (!elem) fail("gguf: ", what, ": unknown array element type ", id);
      const size_t at = c.pos();
      const uint64_t n = c.read<uint64_t>(what);
      if (n > c.remaining() / wire::min_element_bytes(*elem))
        fail("gguf: ", what, ": array count ", n, " at offset ", at, " of ", value_type_name(*elem),
             " cannot fit in the ", c.remaining(), " bytes left (file size ", c.size(), ")");
      Array a{*elem, {}};
      a.items.reserve(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) a.items.push_back(read_value(c, *elem, depth + 1, what));
      return {ValueType::ARRAY, std::move(a)};
    }
  }
  fail("gguf: ", what, ": unknown value type ", static_cast<uint32_t>(t));
}

uint32_t byteswap32(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24);
}

struct AlignedFree {
  void operator()(uint8_t* p) const { ::operator delete(p, std::align_val_t{64}); }
};

// Strips the leading "gguf: " so a path can go in front of the rest.
std::string without_prefix(const char* what) {
  std::string_view m(what);
  if (m.starts_with("gguf: ")) m.remove_prefix(6);
  return std::string(m);
}

}  // namespace

struct File::Impl {
  MappedFile map;                               // open(): the mapping
  std::unique_ptr<uint8_t, AlignedFree> copy;  // parse(): our own copy, 64-byte aligned
  const uint8_t* base = nullptr;
  size_t size = 0;

  uint32_t version = 0;
  size_t alignment = kDefaultAlignment;
  size_t data_offset = 0;
  std::vector<std::pair<std::string, Value>> metadata;
  std::map<std::string, size_t, std::less<>> key_index;
  std::vector<TensorInfo> tensors;
  std::map<std::string, size_t, std::less<>> tensor_index;

  void parse();
  void parse_header(Cursor& c, uint64_t& n_tensors, uint64_t& n_kv);
  void parse_metadata(Cursor& c, uint64_t n_kv);
  void parse_tensor_infos(Cursor& c, uint64_t n_tensors);
  void place_tensors();
};

void File::Impl::parse() {
  Cursor c(base, size);
  uint64_t n_tensors = 0, n_kv = 0;
  parse_header(c, n_tensors, n_kv);
  parse_metadata(c, n_kv);
  if (auto it = key_index.find(wire::kAlignmentKey); it != key_index.end())
    alignment = wire::check_alignment_value("gguf", metadata[it->second].second);
  parse_tensor_infos(c, n_tensors);
  // pos <= size and alignment < 2^32, so this cannot overflow.
  data_offset = static_cast<size_t>(*wire::align_up(c.pos(), alignment));
  place_tensors();
}

void File::Impl::parse_header(Cursor& c, uint64_t& n_tensors, uint64_t& n_kv) {
  if (size < 4) fail("gguf: file of ", size, " bytes is too small to hold the magic");
  if (std::memcmp(base, wire::kMagic, 4) != 0) {
    std::ostringstream hex;
    hex << std::hex;
    for (int i = 0; i < 4; ++i) hex << (i ? " " : "") << int{base[i]};
    fail("gguf: bad magic bytes ", hex.str(), " (expected 'GGUF')");
  }
  c.read<uint32_t>("magic");
  version = c.read<uint32_t>("version");
  if (version == 1)
    fail("gguf: version 1 files are not supported (need v2 or v3); convert the model again");
  if ((version & 0xFFFFu) == 0 && byteswap32(version) >= 1 && byteswap32(version) <= 3)
    fail("gguf: big-endian file (version field reads ", version, ", byte-swapped ", byteswap32(version),
         "); only little-endian GGUF is supported");
  if (version != 2 && version != 3) fail("gguf: unsupported version ", version, " (need 2 or 3)");
  n_tensors = c.read<uint64_t>("tensor count");
  n_kv = c.read<uint64_t>("metadata count");
  if (n_kv > c.remaining() / wire::kMinPairBytes)
    fail("gguf: metadata count ", n_kv, " cannot fit in the ", c.remaining(),
         " bytes after the header (file size ", size, ")");
  const size_t left = c.remaining() - static_cast<size_t>(n_kv) * wire::kMinPairBytes;
  if (n_tensors > left / wire::kMinTensorInfoBytes)
    fail("gguf: tensor count ", n_tensors, " cannot fit in the ", c.remaining(),
         " bytes after the header (file size ", size, ")");
}

void File::Impl::parse_metadata(Cursor& c, uint64_t n_kv) {
  metadata.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string where = "metadata pair " + std::to_string(i);
    std::string key = c.read_string(where + " key");
    if (key_index.count(key)) fail("gguf: duplicate metadata key '", key, "' (pair ", i, ")");
    const std::string what = "value of '" + key + "'";
    const uint32_t id = c.read<uint32_t>(what);
    const auto type = wire::value_type_from_id(id);
    if (!type) fail("gguf: metadata key '", key, "' has unknown value type ", id);
    Value v = read_value(c, *type, 0, what);
    key_index.emplace(key, metadata.size());
    metadata.emplace_back(std::move(key), std::move(v));
  }
}

void File::Impl::parse_tensor_infos(Cursor& c, uint64_t n_tensors) {
  tensors.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string where = "tensor info " + std::to_string(i);
    TensorInfo t;
    t.name = c.read_string(where + " name");
    wire::check_tensor_name("gguf", t.name);
    if (tensor_index.count(t.name)) fail("gguf: duplicate tensor name '", t.name, "' (tensor ", i, ")");
    const std::string what = "tensor '" + t.name + "'";
    const uint32_t n_dims = c.read<uint32_t>(what);
    if (n_dims == 0 || n_dims > 4) fail("gguf: tensor '", t.name, "' has n_dims ", n_dims, " (must be 1..4)");
    t.ne.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t raw = c.read<uint64_t>(what);
      if (raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("gguf: tensor '", t.name, "' ne[", d, "] = ", raw, " is out of range (>= 2^63)");
      t.ne[d] = static_cast<int64_t>(raw);
    }
    const uint32_t type_id = c.read<uint32_t>(what);
    const auto tr = dtype_traits(type_id);
    if (!tr) fail("gguf: tensor '", t.name, "' has unknown type id ", type_id);
    t.type = tr->type;
    t.offset = c.read<uint64_t>(what);
    t.nbytes = wire::tensor_nbytes("gguf", t.name, t.type, t.ne);
    tensor_index.emplace(t.name, tensors.size());
    tensors.push_back(std::move(t));
  }
}

void File::Impl::place_tensors() {
  for (auto& t : tensors) {
    if (t.offset % alignment != 0)
      fail("gguf: tensor '", t.name, "' offset ", t.offset, " is not a multiple of the alignment ", alignment);
    uint64_t start = 0, end = 0;
    if (__builtin_add_overflow(uint64_t{data_offset}, t.offset, &start) ||
        __builtin_add_overflow(start, uint64_t{t.nbytes}, &end))
      fail("gguf: tensor '", t.name, "' offset ", t.offset, " + ", t.nbytes, " bytes overflows (file size ",
           size, ")");
    if (end > size)
      fail("gguf: tensor '", t.name, "' data [", start, ", ", end, ") ends past end of file (size ", size, ")");
    t.data = base + start;
  }
  // Sorted by (start, end), each tensor must begin at or after the furthest end
  // seen so far; empty tensors never overlap anything at their own start.
  std::vector<const TensorInfo*> order;
  order.reserve(tensors.size());
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->nbytes < b->nbytes;
  });
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo* t : order) {
    if (furthest != nullptr && t->nbytes > 0 && furthest->offset + furthest->nbytes > t->offset)
      fail("gguf: tensors '", furthest->name, "' [", furthest->offset, ", ", furthest->offset + furthest->nbytes,
           ") and '", t->name, "' [", t->offset, ", ", t->offset + t->nbytes, ") overlap (offsets in the data section)");
    if (furthest == nullptr || t->offset + t->nbytes > furthest->offset + furthest->nbytes) furthest = t;
  }
}

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->map = MappedFile::open(path);
  } catch (const Error& e) {
    fail("gguf: ", e.what());
  }
  impl->base = impl->map.data();
  impl->size = impl->map.size();
  try {
    impl->parse();
  } catch (const Error& e) {
    fail("gguf: ", path, ": ", without_prefix(e.what()));
  }
  return File(std::move(impl));
}

File File::parse(std::span<const uint8_t> bytes) {
  auto impl = std::make_unique<Impl>();
  impl->copy.reset(static_cast<uint8_t*>(::operator new(std::max<size_t>(bytes.size(), 1), std::align_val_t{64})));
  if (!bytes.empty()) std::memcpy(impl->copy.get(), bytes.data(), bytes.size());
  impl->base = impl->copy.get();
  impl->size = bytes.size();
  impl->parse();
  return File(std::move(impl));
}

uint32_t File::version() const { return impl_->version; }
bool File::mapped() const { return impl_->map.data() != nullptr; }
const MappedFile* File::mapping() const { return mapped() ? &impl_->map : nullptr; }
size_t File::alignment() const { return impl_->alignment; }
size_t File::file_size() const { return impl_->size; }
size_t File::data_offset() const { return impl_->data_offset; }

const std::vector<std::pair<std::string, Value>>& File::metadata() const { return impl_->metadata; }

const Value* File::find(std::string_view key) const {
  auto it = impl_->key_index.find(key);
  return it == impl_->key_index.end() ? nullptr : &impl_->metadata[it->second].second;
}

const std::vector<TensorInfo>& File::tensors() const { return impl_->tensors; }

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = impl_->tensor_index.find(name);
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne)
    if (__builtin_mul_overflow(n, d, &n)) fail("gguf: tensor '", name, "' element count overflows");
  return n;
}

std::string shape_text(std::span<const int64_t> ne) {
  std::string out = "[";
  for (size_t i = 0; i < ne.size(); ++i) out += (i ? ", " : "") + std::to_string(ne[i]);
  return out + "]";
}

}  // namespace kestrel::gguf
