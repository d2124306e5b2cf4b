// The committed fuzz seeds (written by fuzz/make_gguf_corpus.py, a separate
// Python encoding of the format) must parse with the expected content and be
// reproduced byte for byte by the Writer. Every input in fuzz/regressions/gguf
// (crashes the fuzzer once found) must parse or throw kestrel::Error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "gguf/gguf.h"
#include "walk.h"

namespace kestrel::gguf {
namespace {

namespace fs = std::filesystem;

const fs::path kSeeds = fs::path(KESTREL_SOURCE_DIR) / "fuzz" / "corpus" / "gguf";
const fs::path kRegressions = fs::path(KESTREL_SOURCE_DIR) / "fuzz" / "regressions" / "gguf";

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> rewrite(const File& f) {
  Writer w;
  w.copy_metadata(f);
  for (const auto& t : f.tensors())
    w.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  return w.to_bytes();
}

TEST(GgufCorpus, SeedsParseAndRewriteIdentically) {
  const char* names[] = {"empty_header", "every_value_type", "tensor_types", "aligned_64", "version2_llama"};
  for (const char* name : names) {
    SCOPED_TRACE(name);
    auto bytes = read_all(kSeeds / name);
    ASSERT_FALSE(bytes.empty());
    const File f = File::parse(bytes);
    if (f.version() == 2) bytes[4] = 3;  // the Writer always writes v3; nothing else differs
    EXPECT_EQ(rewrite(f), bytes);
  }
}

TEST(GgufCorpus, SeedContents) {
  const File values = File::parse(read_all(kSeeds / "every_value_type"));
  EXPECT_EQ(values.metadata().size(), 25u);  // 12 scalars, 12 arrays of them, 1 nested
  EXPECT_EQ(values.get_i64("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(values.get_u64("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(values.get_f64("f64"), 1e-300);
  EXPECT_EQ(values.get_string("str"), "hello");
  EXPECT_EQ(values.get_string_array("arr.8"), (std::vector<std::string>{"hello", "hello"}));
  const Array& nested = values.find("arr.nested")->as_array();
  ASSERT_EQ(nested.items.size(), 3u);
  EXPECT_EQ(nested.items[2].as_array().items[0].as_array().items[1], Value::i32(-1));

  const File tensors = File::parse(read_all(kSeeds / "tensor_types"));
  ASSERT_EQ(tensors.tensors().size(), 9u);
  EXPECT_EQ(tensors.find_tensor("q6_k.4d")->nbytes, 210u);
  EXPECT_EQ(tensors.find_tensor("q8_0.3d")->nbytes, 4u * 34);

  const File aligned = File::parse(read_all(kSeeds / "aligned_64"));
  EXPECT_EQ(aligned.alignment(), 64u);
  EXPECT_EQ(aligned.find_tensor("b")->offset, 64u);

  const File v2 = File::parse(read_all(kSeeds / "version2_llama"));
  EXPECT_EQ(v2.version(), 2u);
  EXPECT_EQ(v2.get_string_array("tokenizer.ggml.tokens")->size(), 26u);
}

TEST(GgufCorpus, FuzzRegressionsParseOrThrow) {
  if (!fs::exists(kRegressions)) GTEST_SKIP() << "no regression inputs";
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(kRegressions)) {
    if (!entry.is_regular_file() || entry.path().filename().string().starts_with('.')) continue;
    ++n;
    const auto bytes = read_all(entry.path());
    try {
      test::walk(File::parse(bytes));
    } catch (const Error&) {
    }
  }
  RecordProperty("regressions", static_cast<int>(n));
}

}  // namespace
}  // namespace kestrel::gguf
