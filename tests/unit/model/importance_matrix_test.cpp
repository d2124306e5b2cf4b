// llama.cpp's importance matrix read as llama-quantize reads it (sums of
// squares over counts; a zero count gives every column 1), and every way a
// file can be wrong refused with the file and the tensor named.
#include "model/importance_matrix.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "gguf/gguf.h"
#include "unit/error_text.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

struct Entry {
  std::string name;
  std::vector<float> sums;
  std::vector<float> counts{4.0f};
  std::vector<int64_t> ne;  // default: {sums.size()}
};

class ImatrixFile : public ::testing::Test {
 protected:
  std::string path = (fs::temp_directory_path() / ("kestrel_imatrix_" + std::to_string(::getpid()) + ".gguf")).string();
  void TearDown() override { fs::remove(path); }

  void write(const std::vector<Entry>& entries, const std::string& type = "imatrix") {
    gguf::Writer w;
    w.set_string("general.type", type);
    w.set_string_array("imatrix.datasets", {"calibration.txt"});
    w.set_u32("imatrix.chunk_count", 3);
    for (const Entry& e : entries) {
      if (!e.sums.empty())
        w.add_tensor(e.name + ".in_sum2", DType::F32,
                     e.ne.empty() ? std::vector<int64_t>{static_cast<int64_t>(e.sums.size())} : e.ne,
                     gguf::bytes_of<float>(e.sums));
      if (!e.counts.empty())
        w.add_tensor(e.name + ".counts", DType::F32, {static_cast<int64_t>(e.counts.size())},
                     gguf::bytes_of<float>(e.counts));
    }
    w.write(path);
  }
};

TEST_F(ImatrixFile, MeanSquaresAreSumsOverCountsAndAZeroCountWeighsEveryColumnOne) {
  write({{"blk.0.attn_q.weight", {4.0f, 8.0f, 0.0f, 2.0f}, {4.0f}}, {"blk.0.ffn_down.weight", {3.0f, 5.0f}, {0.0f}}});
  const ImportanceMatrix m = read_importance_matrix(path);
  ASSERT_EQ(m.mean_squares.size(), 2u);
  EXPECT_EQ(*m.find("blk.0.attn_q.weight", 4), (std::vector<float>{1.0f, 2.0f, 0.0f, 0.5f}));
  EXPECT_EQ(*m.find("blk.0.ffn_down.weight", 2), (std::vector<float>{1.0f, 1.0f}));
  EXPECT_EQ(m.find("blk.0.attn_k.weight", 4), nullptr);
  EXPECT_EQ(m.datasets, std::vector<std::string>{"calibration.txt"});
  EXPECT_EQ(m.chunks, 3);
  const std::string other = error_of([&] { m.find("blk.0.attn_q.weight", 896); });
  EXPECT_NE(other.find("4 columns in the importance matrix and 896 in the model"), std::string::npos) << other;
}

TEST_F(ImatrixFile, BadFilesAreRefusedNamingWhatIsWrong) {
  const auto refused = [&](const std::string& words) {
    const std::string e = error_of([&] { read_importance_matrix(path); });
    EXPECT_NE(e.find(words), std::string::npos) << "expected '" << words << "' in: " << e;
    EXPECT_NE(e.find(path), std::string::npos) << e;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  write({{"blk.0.attn_q.weight", {1.0f, 2.0f}, {}}});
  refused("has no blk.0.attn_q.weight.counts");
  write({{"blk.0.attn_q.weight", {}, {2.0f}}});
  refused("blk.0.attn_q.weight.counts has no blk.0.attn_q.weight.in_sum2");
  write({{"blk.0.attn_q.weight", {1.0f, -2.0f}}});
  refused("holds -2");
  write({{"blk.0.attn_q.weight", {1.0f, nan}}});
  refused("holds nan");
  write({{"blk.0.attn_q.weight", {1.0f, 2.0f}, {nan}}});
  refused("holds nan");
  write({{"blk.0.attn_q.weight", {1.0f, 2.0f, 3.0f, 4.0f}, {2.0f, 2.0f}, {2, 2}}});
  refused("no experts");
  write({{"blk.0.attn_q.weight", {1.0f, 2.0f}}}, "model");
  refused("is not an importance matrix (general.type 'model'");
  write({});
  refused("holds no statistics");
  {
    gguf::Writer w;
    w.set_string("general.type", "imatrix");
    w.add_tensor("blk.0.attn_q.weight", DType::F32, {2}, gguf::bytes_of<float>(std::vector<float>{1.0f, 2.0f}));
    w.write(path);
  }
  refused("neither a sum of squares");
  {
    gguf::Writer w;
    w.set_string("general.type", "imatrix");
    w.add_tensor("x.in_sum2", DType::F16, {2}, {0, 0x3c, 0, 0x3c});
    w.add_tensor("x.counts", DType::F32, {1}, gguf::bytes_of<float>(std::vector<float>{1.0f}));
    w.write(path);
  }
  refused("x.in_sum2 is f16, not F32");
  std::ofstream(path, std::ios::binary) << "legacy .dat bytes, not a GGUF";
  refused("llama-imatrix --in-file");
  fs::remove(path);
  refused("imatrix " + path);
}

}  // namespace
}  // namespace kestrel
