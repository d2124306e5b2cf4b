// The real SmolLM2-135M model, if it has been downloaded: known header facts,
// and a rewrite through the streaming Writer that must reproduce the file byte
// for byte (the file was written by llama.cpp's converter, an independent
// implementation of the format).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "core/error.h"
#include "gguf/gguf.h"
#include "platform/mmap.h"

namespace kestrel::gguf {
namespace {

std::string model_path() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/kestrel/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

class GgufRealModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(model_path().c_str(), R_OK) != 0) GTEST_SKIP() << "model not found at " << model_path();
  }
};

TEST_F(GgufRealModel, HeaderFacts) {
  const File f = File::open(model_path());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.require_string("general.architecture"), "llama");
  EXPECT_EQ(f.require_u64("llama.block_count"), 30u);
  EXPECT_EQ(f.require_u64("llama.embedding_length"), 576u);
  EXPECT_EQ(f.require_u64("llama.attention.head_count"), 9u);
  EXPECT_EQ(f.require_u64("llama.attention.head_count_kv"), 3u);
  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.has_value());
  EXPECT_EQ(tokens->size(), 49152u);
  EXPECT_EQ(f.require_string("tokenizer.ggml.model"), "gpt2");

  // 30 blocks x 9 tensors + token_embd + output_norm (the output head is tied).
  EXPECT_EQ(f.tensors().size(), 272u);
  const TensorInfo* embd = f.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->ne, (std::vector<int64_t>{576, 49152}));
  std::map<DType, int> by_type;
  for (const auto& t : f.tensors()) by_type[t.type]++;
  EXPECT_EQ(by_type[DType::F32], 61);  // 2 norms per block + output_norm
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->type, DType::Q4_1);
  EXPECT_EQ(f.find_tensor("blk.29.ffn_down.weight")->ne, (std::vector<int64_t>{1536, 576}));

  // Tensors are packed in file order, each at the previous end rounded up to 32,
  // and the last one ends at the end of the file.
  uint64_t next = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.offset, next) << t.name;
    next = (t.offset + t.nbytes + 31) / 32 * 32;
  }
  EXPECT_EQ(f.data_offset() + next, f.file_size());
}

TEST_F(GgufRealModel, StreamingRewriteIsByteIdentical) {
  const File f = File::open(model_path());
  Writer w;
  w.copy_metadata(f);
  for (const auto& t : f.tensors()) w.add_tensor_info(t.name, t.type, t.ne);
  const std::string out = ::testing::TempDir() + "kestrel_gguf_rewrite_" + std::to_string(::getpid()) + ".gguf";
  w.write(out, [&](const TensorChunk& c) {
    const TensorInfo& src = f.tensors()[c.index];
    const size_t row = src.nbytes / static_cast<size_t>(src.n_elements() / src.ne[0]);
    std::memcpy(c.bytes.data(), src.data + static_cast<size_t>(c.row0) * row, c.bytes.size());
  });
  {
    const MappedFile a = MappedFile::open(model_path());
    const MappedFile b = MappedFile::open(out);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
  }
  std::remove(out.c_str());
}

}  // namespace
}  // namespace kestrel::gguf
