// ops/embedding.h: rows of a table in a file mapping come from the file, with
// the bits of the same rows read from memory, and leave the mapping's pages
// out of the process.
#include "ops/embedding.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/quant_kernels.h"
#include "mapping_rss.h"
#include "platform/mmap.h"

namespace kestrel {
namespace {

constexpr int64_t kRows = 3000, kCols = 256;

std::vector<uint8_t> q8_0_table() {
  const auto& k = kernels::quant_kernels(DType::Q8_0, Isa::Scalar);
  const size_t stride = row_bytes(DType::Q8_0, kCols);
  std::vector<uint8_t> data(stride * kRows);
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> row(kCols);
  for (int64_t r = 0; r < kRows; ++r) {
    for (float& v : row) v = g(rng);
    k.quantize_weights(row.data(), data.data() + static_cast<size_t>(r) * stride, kCols);
  }
  return data;
}

Weight table_at(const uint8_t* data, const MappedFile* file) {
  Weight w;
  w.name = "token_embd.weight";
  w.type = DType::Q8_0;
  w.cols = kCols;
  w.rows = kRows;
  w.data = data;
  w.row_stride = row_bytes(DType::Q8_0, kCols);
  w.file = file;
  return w;
}

TEST(Embedding, MappedTableRowsComeFromTheFileAndStayOutOfMemory) {
  const std::vector<uint8_t> bytes = q8_0_table();
  const std::string path = test::write_temp_file(
      "kestrel_embedding_table.bin", {reinterpret_cast<const char*>(bytes.data()), bytes.size()});
  const MappedFile file = MappedFile::open(path);
  const Weight mapped = table_at(file.data(), &file);
  const Weight in_memory = table_at(bytes.data(), nullptr);
  const auto& kern = kernels::quant_kernels(DType::Q8_0, best_isa());
  const long page = ::sysconf(_SC_PAGESIZE);

  // As after packing a tied output head: the mapping's pages given back.
  drop_mapped_pages(file.data(), file.size());
  ASSERT_LE(test::mapping_resident_bytes(file.data()), page);
  // Rows in five different pages, the first and last included.
  for (int64_t r : {int64_t{0}, int64_t{1}, int64_t{1500}, int64_t{777}, kRows - 1}) {
    std::vector<float> got(kCols), want(kCols);
    embed_row(mapped, r, kern, got.data());
    embed_row(in_memory, r, kern, want.data());
    ASSERT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * kCols), 0) << "row " << r;
  }
  // Through the mapping each row would have made at least its page resident.
  EXPECT_LE(test::mapping_resident_bytes(file.data()), page);
  std::remove(path.c_str());
}

TEST(Embedding, ReadingPastTheEndOfTheFileIsAnError) {
  const std::string path = test::write_temp_file("kestrel_short_file.bin", "0123456789");
  const MappedFile file = MappedFile::open(path);
  std::vector<uint8_t> buf(4);
  file.read(6, buf);
  EXPECT_EQ(std::string(buf.begin(), buf.end()), "6789");
  try {
    file.read(7, buf);
    FAIL() << "a read past the end succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kestrel_short_file.bin"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kestrel
