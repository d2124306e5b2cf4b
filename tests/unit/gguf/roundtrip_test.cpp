// Writer -> reader round trips: every value type, nested arrays, several tensor
// types and shapes, alignments, the streaming path, and the Writer's output
// compared with hand-assembled bytes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "gguf/gguf.h"
#include "raw_gguf.h"

namespace kestrel::gguf {
namespace {

std::vector<uint8_t> pattern(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<uint8_t>(x);
  }
  return v;
}

std::string temp_path(const std::string& tag) {
  return ::testing::TempDir() + "kestrel_gguf_" + tag + "_" + std::to_string(::getpid()) + ".gguf";
}

// One key per scalar type at its extremes, strings with NUL and UTF-8, arrays of
// every element type (including empty ones) and arrays nested three deep.
void set_every_value(Writer& w) {
  w.set("u8", Value::u8(255));
  w.set("i8", Value::i8(-128));
  w.set("u16", Value::u16(65535));
  w.set("i16", Value::i16(-32768));
  w.set("u32", Value::u32(UINT32_MAX));
  w.set("i32", Value::i32(INT32_MIN));
  w.set("u64", Value::u64(UINT64_MAX));
  w.set("i64", Value::i64(INT64_MIN));
  w.set("f32", Value::f32(-0.0f));
  w.set("f32.denormal", Value::f32(std::numeric_limits<float>::denorm_min()));
  w.set("f32.inf", Value::f32(-std::numeric_limits<float>::infinity()));
  w.set("f64", Value::f64(3.141592653589793));
  w.set("bool.t", Value::boolean(true));
  w.set("bool.f", Value::boolean(false));
  w.set("str.empty", Value::string(""));
  w.set("str.nul", Value::string(std::string("a\0b", 3)));
  w.set("str.utf8", Value::string("\xc4\x8d\xe2\x82\xac \xf0\x9f\x98\x80"));
  w.set("arr.u8", Value::array(ValueType::U8, {Value::u8(0), Value::u8(7)}));
  w.set("arr.i8", Value::array(ValueType::I8, {Value::i8(-1)}));
  w.set("arr.u16", Value::array(ValueType::U16, {Value::u16(1), Value::u16(2)}));
  w.set("arr.i16", Value::array(ValueType::I16, {Value::i16(-300)}));
  w.set("arr.u32", Value::array(ValueType::U32, {}));
  w.set("arr.i32", Value::array(ValueType::I32, {Value::i32(5), Value::i32(-5)}));
  w.set("arr.u64", Value::array(ValueType::U64, {Value::u64(1ull << 40)}));
  w.set("arr.i64", Value::array(ValueType::I64, {Value::i64(-(1ll << 40))}));
  w.set("arr.f32", Value::array(ValueType::F32, {Value::f32(0.25f), Value::f32(1e30f)}));
  w.set("arr.f64", Value::array(ValueType::F64, {Value::f64(-1e-300)}));
  w.set("arr.bool", Value::array(ValueType::BOOL, {Value::boolean(true), Value::boolean(false)}));
  w.set("arr.str", Value::array(ValueType::STRING, {Value::string("x"), Value::string("")}));
  w.set("arr.nested",
        Value::array(ValueType::ARRAY,
                     {Value::array(ValueType::ARRAY, {Value::array(ValueType::STRING, {Value::string("deep")}),
                                                      Value::array(ValueType::U8, {})}),
                      Value::array(ValueType::F32, {Value::f32(2.0f)})}));
  w.set("arr.empty_of_arrays", Value::array(ValueType::ARRAY, {}));
}

struct TensorSpec {
  std::string name;
  DType type;
  std::vector<int64_t> ne;
};

const std::vector<TensorSpec>& tensor_specs() {
  static const std::vector<TensorSpec> specs = {
      {"f32.vec", DType::F32, {7}},
      {"f16.mat", DType::F16, {4, 3}},
      {"q4_0.mat", DType::Q4_0, {64, 2}},
      {"q4_1.mat", DType::Q4_1, {32, 5}},
      {"q8_0.3d", DType::Q8_0, {32, 3, 2}},
      {"q4_k.mat", DType::Q4_K, {256, 2}},
      {"q6_k.4d", DType::Q6_K, {256, 1, 1, 2}},
      {"i32.vec", DType::I32, {5}},
      {"bf16.4d", DType::BF16, {3, 1, 2, 1}},
      {"empty", DType::F32, {0, 4}},
  };
  return specs;
}

size_t spec_bytes(const TensorSpec& s) {
  int64_t rows = 1;
  for (size_t i = 1; i < s.ne.size(); ++i) rows *= s.ne[i];
  return row_bytes(s.type, s.ne[0]) * static_cast<size_t>(rows);
}

void add_every_tensor(Writer& w) {
  uint64_t seed = 1;
  for (const auto& s : tensor_specs()) w.add_tensor(s.name, s.type, s.ne, pattern(spec_bytes(s), seed++));
}

void expect_tensors_match(const File& f) {
  ASSERT_EQ(f.tensors().size(), tensor_specs().size());
  uint64_t seed = 1;
  for (size_t i = 0; i < tensor_specs().size(); ++i) {
    const auto& s = tensor_specs()[i];
    const TensorInfo& t = f.tensors()[i];
    EXPECT_EQ(t.name, s.name);
    EXPECT_EQ(t.type, s.type);
    EXPECT_EQ(t.ne, s.ne);
    ASSERT_EQ(t.nbytes, spec_bytes(s));
    EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
    EXPECT_EQ((f.data_offset() + t.offset) % f.alignment(), 0u) << t.name;
    const auto want = pattern(t.nbytes, seed++);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), t.data)) << t.name;
    EXPECT_EQ(f.find_tensor(s.name), &t);
  }
  EXPECT_EQ(f.find_tensor("absent"), nullptr);
}

TEST(GgufRoundTrip, EveryValueTypeAndTensorType) {
  Writer w;
  set_every_value(w);
  add_every_tensor(w);
  const auto bytes = w.to_bytes();
  const File f = File::parse(bytes);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.file_size(), bytes.size());
  EXPECT_EQ(f.metadata(), w.metadata());  // same keys, same order, same typed values
  EXPECT_FALSE(f.has("general.alignment"));  // default alignment is not written
  ASSERT_NE(f.find("str.nul"), nullptr);
  EXPECT_EQ(f.find("str.nul")->as_string().size(), 3u);
  EXPECT_TRUE(std::signbit(f.find("f32")->as_f64()));
  expect_tensors_match(f);
  // Each tensor is padded to the alignment, the last one included.
  EXPECT_EQ(bytes.size() % 32, 0u);
}

TEST(GgufRoundTrip, RewritingAFileReproducesItsBytes) {
  Writer w;
  set_every_value(w);
  add_every_tensor(w);
  const auto bytes = w.to_bytes();
  const File f = File::parse(bytes);
  Writer again;
  again.copy_metadata(f);
  for (const auto& t : f.tensors())
    again.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  EXPECT_EQ(again.to_bytes(), bytes);
}

TEST(GgufRoundTrip, Alignments) {
  for (size_t a : {size_t{1}, size_t{8}, size_t{32}, size_t{64}, size_t{4096}}) {
    SCOPED_TRACE(a);
    Writer w;
    w.set_string("general.architecture", "llama");
    w.set_alignment(a);
    add_every_tensor(w);
    const File f = File::parse(w.to_bytes());
    EXPECT_EQ(f.alignment(), a);
    EXPECT_EQ(f.has("general.alignment"), a != 32);
    if (a != 32) {
      EXPECT_EQ(f.get_u64("general.alignment"), a);
    }
    expect_tensors_match(f);
  }
}

TEST(GgufRoundTrip, AlignmentKeyAndSetAlignmentAgree) {
  Writer w;
  w.set("general.alignment", Value::u32(64));
  EXPECT_EQ(w.alignment(), 64u);
  w.set_alignment(32);  // the key exists, so it is updated rather than dropped
  EXPECT_EQ(w.metadata().size(), 1u);
  EXPECT_EQ(w.metadata()[0].second, Value::u32(32));
  const File f = File::parse(w.to_bytes());
  EXPECT_EQ(f.get_u64("general.alignment"), 32u);
  EXPECT_TRUE(w.remove("general.alignment"));
  EXPECT_FALSE(w.remove("general.alignment"));
  w.set("general.alignment", Value::u32(128));
  w.add_tensor("t", DType::F32, {3}, pattern(12, 9));
  Writer copy;
  copy.copy_metadata(File::parse(w.to_bytes()));
  EXPECT_EQ(copy.alignment(), 128u);
}

TEST(GgufRoundTrip, SetReplacesInPlace) {
  Writer w;
  w.set_u32("a", 1);
  w.set_u32("b", 2);
  w.set_string("a", "now a string");
  ASSERT_EQ(w.metadata().size(), 2u);
  EXPECT_EQ(w.metadata()[0].first, "a");
  EXPECT_EQ(w.metadata()[0].second, Value::string("now a string"));
}

// The Writer against bytes assembled field by field from the format description.
TEST(GgufRoundTrip, WriterMatchesHandAssembledBytes) {
  Writer w;
  w.set_u32("n", 7);
  w.set_string("s", "hi");
  w.set("arr", Value::array(ValueType::I16, {Value::i16(-2), Value::i16(3)}));
  w.add_tensor("a", DType::F32, {3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  w.add_tensor("b", DType::I8, {2, 2}, {0xAA, 0xBB, 0xCC, 0xDD});

  auto raw = test::Raw::header(2, 3);
  raw.kv("n", 4, uint32_t{7}).kv_str("s", "hi");
  raw.str("arr").u32(9).u32(3).u64(2).put(int16_t{-2}).put(int16_t{3});
  raw.tensor("a", {3}, 0, 0).tensor("b", {2, 2}, 24, 32).pad_to(32);
  for (uint8_t b = 1; b <= 12; ++b) raw.u8(b);
  raw.pad_to(32).u8(0xAA).u8(0xBB).u8(0xCC).u8(0xDD).pad_to(32);
  EXPECT_EQ(w.to_bytes(), raw.bytes);
}

TEST(GgufRoundTrip, VersionTwoIsRead) {
  auto raw = test::Raw::header(1, 1, 2);
  raw.kv_str("general.architecture", "llama").tensor("t", {4}, 0, 0).pad_to(32).zeros(16);
  const File f = File::parse(raw.bytes);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.require_string("general.architecture"), "llama");
  EXPECT_EQ(f.tensors()[0].nbytes, 16u);
}

TEST(GgufRoundTrip, WriteAndOpenFromDisk) {
  Writer w;
  set_every_value(w);
  add_every_tensor(w);
  const std::string path = temp_path("disk");
  w.write(path);
  {
    File f = File::open(path);
    EXPECT_EQ(f.metadata(), w.metadata());
    expect_tensors_match(f);
    // The mapping is page aligned, so tensor data is aligned in memory too.
    for (const auto& t : f.tensors()) EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << t.name;
    File moved = std::move(f);
    expect_tensors_match(moved);  // pointers stay valid across a move
  }
  std::remove(path.c_str());
}

// The streamed path must produce the same bytes as the in-memory one, and ask
// for every row exactly once, in order, in whole-row chunks.
TEST(GgufRoundTrip, StreamingMatchesInMemory) {
  const std::vector<TensorSpec> specs = {
      {"small", DType::Q8_0, {64, 3}},
      {"big", DType::F32, {1024, 2100}},  // 8.2 MiB: more than one chunk
      {"zero", DType::F16, {0, 2}},
  };
  Writer mem, streamed;
  for (Writer* w : {&mem, &streamed}) w->set_string("general.name", "stream");
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < specs.size(); ++i) {
    data.push_back(pattern(spec_bytes(specs[i]), 100 + i));
    mem.add_tensor(specs[i].name, specs[i].type, specs[i].ne, data.back());
  }
  streamed.add_tensor_info(specs[0].name, specs[0].type, specs[0].ne);
  streamed.add_tensor(specs[1].name, specs[1].type, specs[1].ne, data[1]);  // mixed: bytes given
  streamed.add_tensor_info(specs[2].name, specs[2].type, specs[2].ne);

  Writer big_streamed;
  big_streamed.set_string("general.name", "stream");
  for (const auto& s : specs) big_streamed.add_tensor_info(s.name, s.type, s.ne);

  std::vector<int64_t> next_row(specs.size(), 0);
  size_t calls = 0;
  const FillFn fill = [&](const TensorChunk& c) {
    ++calls;
    ASSERT_LT(c.index, specs.size());
    EXPECT_EQ(c.info->name, specs[c.index].name);
    EXPECT_EQ(c.row0, next_row[c.index]);
    const size_t row = row_bytes(c.info->type, c.info->ne[0]);
    ASSERT_EQ(c.bytes.size(), static_cast<size_t>(c.n_rows) * row);
    EXPECT_LE(c.bytes.size(), std::max(Writer::kStreamChunkBytes, row));
    std::copy_n(data[c.index].begin() + static_cast<ptrdiff_t>(c.row0 * row), c.bytes.size(), c.bytes.begin());
    next_row[c.index] += c.n_rows;
  };
  const auto want = mem.to_bytes();
  EXPECT_EQ(streamed.to_bytes(fill), want);
  EXPECT_EQ(next_row[0], 3);
  EXPECT_EQ(calls, 1u);  // "zero" has no bytes, so it is never asked for

  std::fill(next_row.begin(), next_row.end(), 0);
  calls = 0;
  const std::string path = temp_path("stream");
  big_streamed.write(path, fill);
  EXPECT_EQ(next_row[1], 2100);
  EXPECT_GE(calls, 3u);  // "big" took at least two chunks
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, want);
  std::remove(path.c_str());

  const auto infos = big_streamed.tensor_infos();
  ASSERT_EQ(infos.size(), 3u);
  EXPECT_EQ(infos[1].offset, 224u);  // 3 rows * 2 blocks * 34 = 204 bytes, rounded up to 32
  EXPECT_EQ(infos[1].nbytes, 1024u * 2100 * 4);
}

TEST(GgufWriter, StreamedTensorWithoutFillThrows) {
  Writer w;
  w.add_tensor_info("t", DType::F32, {4});
  EXPECT_THROW(w.to_bytes(), Error);
  const std::string path = temp_path("nofill");
  EXPECT_THROW(w.write(path), Error);
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // nothing left behind
}

TEST(GgufWriter, FailingFillRemovesThePartialFile) {
  Writer w;
  w.add_tensor_info("t", DType::F32, {4});
  const std::string path = temp_path("failfill");
  EXPECT_THROW(w.write(path, [](const TensorChunk&) { throw Error("fill failed"); }), Error);
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
  EXPECT_THROW(w.write("/nonexistent-dir/x.gguf", [](const TensorChunk&) {}), Error);
}

TEST(GgufWriter, RejectsBadValuesAndTensors) {
  Writer w;
  EXPECT_THROW(w.set_alignment(0), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
  EXPECT_THROW(w.set_alignment(size_t{1} << 32), Error);
  EXPECT_THROW(w.set("general.alignment", Value::i32(64)), Error);
  EXPECT_THROW(w.set("general.alignment", Value::u32(3)), Error);
  EXPECT_THROW(w.set("x", Value{ValueType::U8, uint64_t{300}}), Error);
  EXPECT_THROW(w.set("x", Value{ValueType::I16, int64_t{40000}}), Error);
  EXPECT_THROW(w.set("x", Value{ValueType::F32, 1e300}), Error);
  EXPECT_THROW(w.set("x", Value{ValueType::STRING, uint64_t{1}}), Error);
  EXPECT_THROW(w.set("x", Value::array(ValueType::U8, {Value::u8(1), Value::i8(1)})), Error);
  EXPECT_THROW(w.set("x", Value{static_cast<ValueType>(13), uint64_t{0}}), Error);
  Value deep = Value::array(ValueType::U8, {});
  for (int i = 1; i < kMaxArrayDepth; ++i) deep = Value::array(ValueType::ARRAY, {deep});
  EXPECT_NO_THROW(w.set("deep", deep));
  EXPECT_THROW(w.set("deeper", Value::array(ValueType::ARRAY, {deep})), Error);
  EXPECT_EQ(w.metadata().size(), 1u);

  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(15)), Error);
  EXPECT_THROW(w.add_tensor("t", DType::Q4_0, {33}, {}), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {}, {}), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {-1}, {}), Error);
  EXPECT_THROW(w.add_tensor("", DType::F32, {1}, std::vector<uint8_t>(4)), Error);
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), DType::F32, {1}, std::vector<uint8_t>(4)), Error);
  EXPECT_THROW(w.add_tensor_info("t", static_cast<DType>(4), {32}), Error);
  EXPECT_NO_THROW(w.add_tensor(std::string(63, 'n'), DType::F32, {1}, std::vector<uint8_t>(4)));
  w.add_tensor("t", DType::F32, {1}, std::vector<uint8_t>(4));
  EXPECT_THROW(w.add_tensor_info("t", DType::F32, {1}), Error);
  EXPECT_EQ(w.tensor_infos().size(), 2u);
}

}  // namespace
}  // namespace kestrel::gguf
