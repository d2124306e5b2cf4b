// Value conversions and File's typed getters: what converts, what throws, and
// that messages name the key and both types.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "gguf/gguf.h"
#include "unit/error_text.h"

namespace kestrel::gguf {
namespace {

using kestrel::testing::error_of;

TEST(GgufValue, TypeNames) {
  const std::pair<ValueType, std::string_view> expected[] = {
      {ValueType::U8, "u8"},   {ValueType::I8, "i8"},     {ValueType::U16, "u16"},     {ValueType::I16, "i16"},
      {ValueType::U32, "u32"}, {ValueType::I32, "i32"},   {ValueType::F32, "f32"},     {ValueType::BOOL, "bool"},
      {ValueType::STRING, "string"}, {ValueType::ARRAY, "array"}, {ValueType::U64, "u64"}, {ValueType::I64, "i64"},
      {ValueType::F64, "f64"}};
  for (auto [t, name] : expected) EXPECT_EQ(value_type_name(t), name);
  EXPECT_EQ(value_type_name(static_cast<ValueType>(99)), "unknown");
}

TEST(GgufValue, UnsignedConversions) {
  EXPECT_EQ(Value::u8(255).as_u64(), 255u);
  EXPECT_EQ(Value::u64(UINT64_MAX).as_u64(), UINT64_MAX);
  EXPECT_EQ(Value::i32(7).as_u64(), 7u);
  EXPECT_NE(error_of([] { Value::i32(-3).as_u64(); }).find("value -3 (i32) is negative"), std::string::npos);
  EXPECT_NE(error_of([] { Value::f32(1.0f).as_u64(); }).find("expected an unsigned integer, found f32"),
            std::string::npos);
  EXPECT_THROW(Value::boolean(true).as_u64(), Error);
}

TEST(GgufValue, SignedConversions) {
  EXPECT_EQ(Value::i8(-128).as_i64(), -128);
  EXPECT_EQ(Value::i64(INT64_MIN).as_i64(), INT64_MIN);
  EXPECT_EQ(Value::u64(uint64_t{INT64_MAX}).as_i64(), INT64_MAX);
  EXPECT_NE(error_of([] { Value::u64(uint64_t{INT64_MAX} + 1).as_i64(); }).find("does not fit i64"),
            std::string::npos);
  EXPECT_NE(error_of([] { Value::string("x").as_i64(); }).find("expected an integer, found string"),
            std::string::npos);
}

TEST(GgufValue, FloatAndOtherConversions) {
  EXPECT_EQ(Value::f32(0.1f).as_f64(), static_cast<double>(0.1f));
  EXPECT_EQ(Value::f64(0.1).as_f64(), 0.1);
  EXPECT_EQ(Value::i16(-5).as_f64(), -5.0);
  EXPECT_EQ(Value::u16(65535).as_f64(), 65535.0);
  EXPECT_THROW(Value::boolean(false).as_f64(), Error);
  EXPECT_TRUE(Value::boolean(true).as_bool());
  EXPECT_THROW(Value::u8(1).as_bool(), Error);
  EXPECT_EQ(Value::string("abc").as_string(), "abc");
  EXPECT_NE(error_of([] { Value::u8(1).as_string(); }).find("expected string, found u8"), std::string::npos);
  EXPECT_EQ(Value::array(ValueType::U8, {Value::u8(1)}).as_array().items.size(), 1u);
  EXPECT_THROW(Value::string("x").as_array(), Error);
}

TEST(GgufValue, MalformedPayloadIsReportedNotReinterpreted) {
  const Value bad{ValueType::U8, std::string("three")};
  EXPECT_NE(error_of([&] { bad.as_u64(); }).find("malformed u8"), std::string::npos);
  const Value bad_bool{ValueType::BOOL, uint64_t{1}};
  EXPECT_THROW(bad_bool.as_bool(), Error);
}

TEST(GgufValue, Equality) {
  EXPECT_EQ(Value::u32(5), Value::u32(5));
  EXPECT_NE(Value::u32(5), Value::u64(5));  // same number, different wire type
  EXPECT_NE(Value::u32(5), Value::u32(6));
  const auto a = Value::array(ValueType::ARRAY, {Value::array(ValueType::STRING, {Value::string("x")})});
  auto b = a;
  EXPECT_EQ(a, b);
  std::get<Array>(std::get<Array>(b.data).items[0].data).items[0] = Value::string("y");
  EXPECT_NE(a, b);
}

// A File with one key of each shape the getters care about.
File getter_file() {
  Writer w;
  w.set_u32("u", 42);
  w.set_i32("neg", -1);
  w.set_string("s", "hello");
  w.set_bool("b", true);
  w.set_f32("f", 1.5f);
  w.set_string_array("strs", {"a", "", "c"});
  w.set_i32_array("ints", {-1, 0, 1});
  w.set_f32_array("floats", {0.5f, -2.0f});
  w.set("u8s", Value::array(ValueType::U8, {Value::u8(1), Value::u8(255)}));
  w.set("u64s", Value::array(ValueType::U64, {Value::u64(1), Value::u64(UINT64_MAX)}));
  w.set("big_f64s", Value::array(ValueType::F64, {Value::f64(1e300)}));
  return File::parse(w.to_bytes());
}

TEST(GgufGetters, PresentMissingAndConverted) {
  const File f = getter_file();
  EXPECT_EQ(f.get_u64("u"), 42u);
  EXPECT_EQ(f.get_i64("u"), 42);
  EXPECT_EQ(f.get_f64("u"), 42.0);
  EXPECT_EQ(f.get_i64("neg"), -1);
  EXPECT_EQ(f.get_string("s"), "hello");
  EXPECT_EQ(f.get_bool("b"), true);
  EXPECT_EQ(f.get_f64("f"), 1.5);
  EXPECT_EQ(f.get_string_array("strs"), (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(f.get_int_array("ints"), (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_EQ(f.get_int_array("u8s"), (std::vector<int64_t>{1, 255}));
  EXPECT_EQ(f.get_f32_array("floats"), (std::vector<float>{0.5f, -2.0f}));
  EXPECT_EQ(f.get_f32_array("ints"), (std::vector<float>{-1.0f, 0.0f, 1.0f}));
  EXPECT_EQ(f.get_u64("missing"), std::nullopt);
  EXPECT_EQ(f.get_string_array("missing"), std::nullopt);
  EXPECT_FALSE(f.has("missing"));
  EXPECT_TRUE(f.has("s"));
  EXPECT_EQ(f.require_u64("u"), 42u);
  EXPECT_EQ(f.require_string("s"), "hello");
}

TEST(GgufGetters, WrongTypeMessagesNameKeyAndTypes) {
  const File f = getter_file();
  EXPECT_EQ(error_of([&] { f.get_u64("s"); }),
            "gguf: metadata key 's': expected an unsigned integer, found string");
  EXPECT_EQ(error_of([&] { f.get_u64("neg"); }),
            "gguf: metadata key 'neg': value -1 (i32) is negative, expected an unsigned integer");
  EXPECT_EQ(error_of([&] { f.get_string("u"); }), "gguf: metadata key 'u': expected string, found u32");
  EXPECT_EQ(error_of([&] { f.get_bool("s"); }), "gguf: metadata key 's': expected bool, found string");
  EXPECT_EQ(error_of([&] { f.get_string_array("ints"); }),
            "gguf: metadata key 'ints': expected array of string, found array of i32");
  EXPECT_EQ(error_of([&] { f.get_int_array("floats"); }),
            "gguf: metadata key 'floats': expected array of integers, found array of f32");
  EXPECT_EQ(error_of([&] { f.get_int_array("u64s"); }),
            "gguf: metadata key 'u64s': element 1: value 18446744073709551615 (u64) does not fit i64");
  EXPECT_NE(error_of([&] { f.get_f32_array("big_f64s"); }).find("does not fit f32"), std::string::npos);
  EXPECT_EQ(error_of([&] { f.get_f32_array("s"); }), "gguf: metadata key 's': expected array, found string");
  EXPECT_EQ(error_of([&] { f.require_u64("nope"); }), "gguf: missing metadata key 'nope'");
  EXPECT_EQ(error_of([&] { f.require_string("nope"); }), "gguf: missing metadata key 'nope'");
}

}  // namespace
}  // namespace kestrel::gguf
