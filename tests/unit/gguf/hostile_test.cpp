// Hostile input: every truncation, bit flips everywhere, and one crafted file
// per validation rule. Each must throw kestrel::Error (or, for flips that keep
// the file valid, parse) and never crash; run under ASan/UBSan too.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "gguf/gguf.h"
#include "raw_gguf.h"
#include "unit/error_text.h"
#include "walk.h"

namespace kestrel::gguf {
namespace {

using kestrel::testing::error_of;

using test::Raw;
using test::walk;

// A small valid file whose last tensor ends exactly at the end of the file, so
// that every shorter prefix is invalid.
std::vector<uint8_t> small_valid_file() {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("flag", true);
  w.set_string_array("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "bc"});
  w.set("nested", Value::array(ValueType::ARRAY, {Value::array(ValueType::I64, {Value::i64(-7)})}));
  std::vector<uint8_t> q(36), f(32), h(32);
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<uint8_t>(i + 1);
  w.add_tensor("blk.0.q", DType::Q4_0, {32, 2}, q);
  w.add_tensor("blk.0.norm", DType::F32, {8}, f);
  w.add_tensor("out", DType::F16, {16}, h);
  return w.to_bytes();
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  return error_of([&] { walk(File::parse(bytes)); });
}

#define EXPECT_PARSE_ERROR(bytes, needle) \
  EXPECT_NE(parse_error(bytes).find(needle), std::string::npos) << parse_error(bytes)

TEST(GgufHostile, EveryTruncationThrows) {
  const auto full = small_valid_file();
  const File f = File::parse(full);
  uint64_t end = 0;
  for (const auto& t : f.tensors()) end = std::max<uint64_t>(end, f.data_offset() + t.offset + t.nbytes);
  ASSERT_EQ(end, full.size());
  for (size_t len = 0; len < full.size(); ++len) {
    const std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<ptrdiff_t>(len));
    EXPECT_THROW(File::parse(prefix), Error) << "prefix of " << len << " bytes";
  }
}

TEST(GgufHostile, EveryBitFlipParsesOrThrows) {
  const auto full = small_valid_file();
  const File original = File::parse(full);
  size_t parsed = 0, rejected = 0;
  for (size_t pos = 0; pos < full.size(); ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bytes = full;
      bytes[pos] ^= static_cast<uint8_t>(1u << bit);
      bool ok = false;
      try {
        walk(File::parse(bytes));
        ok = true;
      } catch (const Error&) {
      }
      (ok ? parsed : rejected)++;
      if (pos < 4) {
        EXPECT_FALSE(ok) << "flip in the magic at " << pos;
      }
      if (pos >= original.data_offset()) {
        // Tensor bytes are opaque: flipping one changes no structure.
        ASSERT_TRUE(ok) << "flip in tensor data at " << pos;
        EXPECT_EQ(File::parse(bytes).metadata(), original.metadata());
      }
    }
  }
  EXPECT_GT(parsed, 0u);
  EXPECT_GT(rejected, 0u);
}

TEST(GgufHostile, TooSmallAndBadMagic) {
  EXPECT_PARSE_ERROR(std::vector<uint8_t>{}, "too small");
  EXPECT_PARSE_ERROR((std::vector<uint8_t>{'G', 'G', 'U'}), "too small");
  auto raw = Raw::header(0, 0);
  raw.bytes[0] = 'X';
  EXPECT_EQ(parse_error(raw.bytes), "gguf: bad magic bytes 58 47 55 46 (expected 'GGUF')");
  EXPECT_PARSE_ERROR((std::vector<uint8_t>{'G', 'G', 'U', 'F', 3, 0}), "truncated file: version");
}

TEST(GgufHostile, Versions) {
  EXPECT_NO_THROW(File::parse(Raw::header(0, 0, 3).bytes));
  EXPECT_PARSE_ERROR(Raw::header(0, 0, 1).bytes, "version 1 files are not supported");
  EXPECT_PARSE_ERROR(Raw::header(0, 0, 4).bytes, "unsupported version 4 (need 2 or 3)");
  EXPECT_PARSE_ERROR(Raw::header(0, 0, 0).bytes, "unsupported version 0");
  EXPECT_PARSE_ERROR(Raw::header(0, 0, 0x03000000).bytes, "big-endian");
}

TEST(GgufHostile, HugeCountsAreRejectedBeforeAllocating) {
  EXPECT_PARSE_ERROR(Raw::header(0, uint64_t{1} << 62).bytes, "metadata count 4611686018427387904 cannot fit");
  EXPECT_PARSE_ERROR(Raw::header(UINT64_MAX, 0).bytes, "tensor count 18446744073709551615 cannot fit");
  // One pair fits in 13 bytes; two do not.
  auto two = Raw::header(0, 2);
  two.kv("a", 0, uint8_t{1});
  EXPECT_PARSE_ERROR(two.bytes, "metadata count 2 cannot fit");

  auto key = Raw::header(0, 1);
  key.u64(UINT64_MAX).u32(0).u8(0);
  EXPECT_PARSE_ERROR(key.bytes, "metadata pair 0 key: string length 18446744073709551615 at offset 24");

  auto value = Raw::header(0, 1);
  value.str("s").u32(8).u64(1000).zeros(10);
  EXPECT_PARSE_ERROR(value.bytes, "value of 's': string length 1000");

  for (uint32_t elem : {0u, 8u, 9u, 10u}) {
    auto arr = Raw::header(0, 1);
    arr.str("a").u32(9).u32(elem).u64(uint64_t{1} << 60).zeros(64);
    EXPECT_PARSE_ERROR(arr.bytes, "value of 'a': array count 1152921504606846976");
  }
  // 8 u64 elements need 64 bytes; only 63 remain.
  auto tight = Raw::header(0, 1);
  tight.str("a").u32(9).u32(10).u64(8).zeros(63);
  EXPECT_PARSE_ERROR(tight.bytes, "array count 8");
}

TEST(GgufHostile, ValueTypes) {
  auto type = Raw::header(0, 1);
  type.str("k").u32(13).zeros(8);
  EXPECT_EQ(parse_error(type.bytes), "gguf: metadata key 'k' has unknown value type 13");
  auto elem = Raw::header(0, 1);
  elem.str("k").u32(9).u32(77).u64(0);
  EXPECT_PARSE_ERROR(elem.bytes, "unknown array element type 77");
  auto boolean = Raw::header(0, 1);
  boolean.kv("b", 7, uint8_t{2});
  EXPECT_PARSE_ERROR(boolean.bytes, "bool byte 2 at offset 37 is neither 0 nor 1");
  auto dup = Raw::header(0, 2);
  dup.kv("a", 4, uint32_t{1}).kv("a", 4, uint32_t{2});
  EXPECT_EQ(parse_error(dup.bytes), "gguf: duplicate metadata key 'a' (pair 1)");
}

Raw nested(int depth) {
  auto r = Raw::header(0, 1);
  r.str("n").u32(9);
  for (int i = 1; i < depth; ++i) r.u32(9).u64(1);
  r.u32(0).u64(0);  // innermost: empty u8 array
  return r;
}

TEST(GgufHostile, NestingDepth) {
  const File ok = File::parse(nested(kMaxArrayDepth).bytes);
  EXPECT_EQ(ok.find("n")->as_array().elem_type, ValueType::ARRAY);
  EXPECT_PARSE_ERROR(nested(kMaxArrayDepth + 1).bytes, "nested deeper than 16");
  EXPECT_PARSE_ERROR(nested(100000).bytes, "nested deeper than 16");
}

TEST(GgufHostile, Alignment) {
  auto zero = Raw::header(0, 1);
  zero.kv("general.alignment", 4, uint32_t{0});
  EXPECT_EQ(parse_error(zero.bytes), "gguf: general.alignment = 0 is not a nonzero power of two");
  auto odd = Raw::header(0, 1);
  odd.kv("general.alignment", 4, uint32_t{48});
  EXPECT_PARSE_ERROR(odd.bytes, "general.alignment = 48 is not");
  auto typed = Raw::header(0, 1);
  typed.kv("general.alignment", 5, int32_t{64});
  EXPECT_EQ(parse_error(typed.bytes), "gguf: general.alignment must be u32, found i32");
  auto big = Raw::header(0, 1);
  big.kv("general.alignment", 10, uint64_t{64});
  EXPECT_PARSE_ERROR(big.bytes, "must be u32, found u64");

  // 64-byte alignment: an offset of 32 is aligned for the default, not for 64.
  auto r = Raw::header(2, 1);
  r.kv("general.alignment", 4, uint32_t{64}).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 32).pad_to(64).zeros(96);
  EXPECT_EQ(parse_error(r.bytes), "gguf: tensor 'b' offset 32 is not a multiple of the alignment 64");
}

// One tensor 'w' of type/ne/offset; data section padded to 32 then `data` bytes.
std::vector<uint8_t> one_tensor(std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data,
                                std::string_view name = "w") {
  auto r = Raw::header(1, 0);
  r.tensor(name, std::move(ne), type, offset).pad_to(32).zeros(data);
  return r.bytes;
}

TEST(GgufHostile, TensorShapes) {
  EXPECT_NO_THROW(File::parse(one_tensor({8}, 0, 0, 32)));
  EXPECT_EQ(parse_error(one_tensor({}, 0, 0, 32)), "gguf: tensor 'w' has n_dims 0 (must be 1..4)");
  EXPECT_EQ(parse_error(one_tensor({1, 1, 1, 1, 1}, 0, 0, 32)), "gguf: tensor 'w' has n_dims 5 (must be 1..4)");
  auto huge_dims = Raw::header(1, 0);
  huge_dims.str("w").u32(0xFFFFFFFF).zeros(64);
  EXPECT_PARSE_ERROR(huge_dims.bytes, "n_dims 4294967295");
  EXPECT_EQ(parse_error(one_tensor({8, uint64_t{1} << 63}, 0, 0, 32)),
            "gguf: tensor 'w' ne[1] = 9223372036854775808 is out of range (>= 2^63)");
  EXPECT_EQ(parse_error(one_tensor({uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0, 32)),
            "gguf: tensor 'w' shape [4294967296, 4294967296] has more than 2^63 elements");
  // Even with a zero dimension the other products must fit.
  EXPECT_PARSE_ERROR(one_tensor({0, uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0, 32), "more than 2^63 elements");
  EXPECT_PARSE_ERROR(one_tensor({uint64_t{1} << 62}, 28, 0, 32), "needs more than 2^64 bytes");
  EXPECT_EQ(parse_error(one_tensor({33, 2}, 2, 0, 64)),
            "gguf: tensor 'w' ne[0] = 33 is not a multiple of the q4_0 block size 32");
  EXPECT_EQ(parse_error(one_tensor({32}, 4, 0, 32)), "gguf: tensor 'w' has unknown type id 4");
  EXPECT_EQ(parse_error(one_tensor({32}, 1000, 0, 32, "blk.0.attn_q.weight")),
            "gguf: tensor 'blk.0.attn_q.weight' has unknown type id 1000");
  const File empty = File::parse(one_tensor({0, 5}, 0, 0, 0));
  EXPECT_EQ(empty.tensors()[0].nbytes, 0u);
  EXPECT_EQ(empty.tensors()[0].n_elements(), 0);
}

TEST(GgufHostile, TensorNames) {
  EXPECT_EQ(parse_error(one_tensor({8}, 0, 0, 32, "")), "gguf: tensor with an empty name");
  EXPECT_PARSE_ERROR(one_tensor({8}, 0, 0, 32, std::string(64, 'x')), "is 64 bytes long (at most 63)");
  auto dup = Raw::header(2, 0);
  dup.tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad_to(32).zeros(64);
  EXPECT_EQ(parse_error(dup.bytes), "gguf: duplicate tensor name 'w' (tensor 1)");
}

TEST(GgufHostile, TensorPlacement) {
  // Header 24 + info 33 = 57, so data starts at 64; [64+32, 64+64) needs 128 bytes.
  EXPECT_EQ(parse_error(one_tensor({8}, 0, 32, 48)),
            "gguf: tensor 'w' data [96, 128) ends past end of file (size 112)");
  EXPECT_NO_THROW(File::parse(one_tensor({8}, 0, 32, 64)));
  EXPECT_EQ(parse_error(one_tensor({8}, 0, 16, 64)),
            "gguf: tensor 'w' offset 16 is not a multiple of the alignment 32");
  EXPECT_PARSE_ERROR(one_tensor({8}, 0, UINT64_MAX - 31, 64), "overflows");
  EXPECT_PARSE_ERROR(one_tensor({8}, 0, uint64_t{1} << 40, 64), "ends past end of file");
  // No data section at all (file ends inside the padding).
  auto nodata = Raw::header(1, 0);
  nodata.tensor("w", {8}, 0, 0);
  EXPECT_PARSE_ERROR(nodata.bytes, "ends past end of file");

  auto overlap = Raw::header(2, 0);
  overlap.tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad_to(32).zeros(64);
  EXPECT_EQ(parse_error(overlap.bytes),
            "gguf: tensors 'a' [0, 64) and 'b' [32, 64) overlap (offsets in the data section)");
  auto same = Raw::header(2, 0);
  same.tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 0).pad_to(32).zeros(32);
  EXPECT_PARSE_ERROR(same.bytes, "overlap");
  // Out of order but disjoint is fine; so is a gap.
  auto disjoint = Raw::header(2, 0);
  disjoint.tensor("a", {8}, 0, 64).tensor("b", {8}, 0, 0).pad_to(32).zeros(96);
  const File f = File::parse(disjoint.bytes);
  EXPECT_EQ(f.tensors()[0].data, f.tensors()[1].data + 64);
}

TEST(GgufHostile, OpenErrorsNameThePath) {
  EXPECT_PARSE_ERROR(std::vector<uint8_t>{}, "too small");
  const std::string missing = "/nonexistent/model.gguf";
  EXPECT_NE(error_of([&] { File::open(missing); }).find("cannot open '/nonexistent/model.gguf'"), std::string::npos);
  EXPECT_NE(error_of([] { File::open("/"); }).find("not a regular file"), std::string::npos);

  const std::string path = ::testing::TempDir() + "kestrel_gguf_bad_" + std::to_string(::getpid());
  {
    std::ofstream out(path, std::ios::binary);
    out << "GGUF";
  }
  EXPECT_EQ(error_of([&] { File::open(path); }), "gguf: " + path + ": truncated file: version needs 4 bytes at offset 4, only 0 left (file size 4)");
  { std::ofstream out(path, std::ios::binary | std::ios::trunc); }
  EXPECT_NE(error_of([&] { File::open(path); }).find("too small"), std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kestrel::gguf
