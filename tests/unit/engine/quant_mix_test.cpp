// `kestrel quantize ... Q4_K_M` chooses each tensor's type as llama-quantize
// does: checked against a Q4_K_M file llama-quantize wrote, Qwen2.5-Coder-1.5B
// (every tensor of the downloaded file), skipped when that model is absent.
// That file comes from a llama.cpp that counted layers in name order (blk.0,
// blk.1, blk.10, ...), which the test passes as the layer; by default the
// layer is the one in the name, as llama.cpp 0.3.36 (the peer) counts it.
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "gguf/gguf.h"
#include "model/quantize.h"
#include "unit/engine/model_paths.h"

namespace kestrel {
namespace {

TEST(QuantMix, Q4KMChoosesLlamaQuantizesTypesForEveryTensor) {
  const auto path = testing::qwen2_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path << " (scripts/fetch_models.sh qwen2)";
  const gguf::File f = gguf::File::open(path.string());
  QuantizeOptions o;
  o.type = DType::Q4_K;
  o.mix = QuantMix::Medium;
  o.n_layer = static_cast<int>(f.get_u64("qwen2.block_count").value_or(0));
  ASSERT_EQ(o.n_layer, 28);
  int checked = 0, more_bits = 0;
  // Name order: the file's order here.
  std::map<std::string, int> positions;
  int v = 0, down = 0;
  for (const gguf::TensorInfo& t : f.tensors()) {
    if (t.name.find(".attn_v.weight") != std::string::npos) positions[t.name] = v++;
    if (t.name.find(".ffn_down.weight") != std::string::npos) positions[t.name] = down++;
  }
  for (const gguf::TensorInfo& t : f.tensors()) {
    const auto it = positions.find(t.name);
    EXPECT_EQ(quantized_type(t.name, t.ne, t.name == "output.weight", o, it == positions.end() ? -1 : it->second),
              t.type)
        << t.name;
    ++checked;
    more_bits += t.type == DType::Q6_K;
  }
  EXPECT_EQ(checked, 339);
  EXPECT_EQ(more_bits, 1 + 2 * 14);  // output, and 14 of the 28 positions of attn_v and of ffn_down
  // By layer number: blk.10 is the eleventh layer, (10 - 28/8) % 3 = 1: no more bits.
  EXPECT_EQ(quantized_type("blk.10.ffn_down.weight", {8960, 1536}, false, o), DType::Q4_K);
  EXPECT_EQ(quantized_type("blk.11.ffn_down.weight", {8960, 1536}, false, o), DType::Q6_K);
  // Without the mix, every matrix but the output is Q4_K.
  o.mix = QuantMix::None;
  EXPECT_EQ(quantized_type("blk.0.ffn_down.weight", {8960, 1536}, false, o), DType::Q4_K);
  o.mix = QuantMix::Small;
  EXPECT_EQ(quantized_type("blk.0.ffn_down.weight", {8960, 1536}, false, o), DType::Q5_K);
  EXPECT_EQ(quantized_type("blk.3.ffn_down.weight", {8960, 1536}, false, o), DType::Q4_K);
  EXPECT_EQ(quantized_type("blk.3.attn_v.weight", {1536, 256}, false, o), DType::Q5_K);
  EXPECT_EQ(quantized_type("blk.4.attn_v.weight", {1536, 256}, false, o), DType::Q4_K);
}

// With an importance matrix (or AWQ/GPTQ: activation_aware), llama-quantize
// writes the first eighth of a Q4_0 file's ffn_down in Q4_1 (Q5_0: Q5_1)
// (llama-quant.cpp, "guard against craziness in the first few ffn_down
// layers"); a llama-quantize Q4_0 imatrix file of Qwen2.5-1.5B (28 layers) has
// blk.0-2.ffn_down in Q4_1 and no other tensor changed.
TEST(QuantMix, ActivationAwareQ40GivesTheFirstEighthOfFfnDownQ41AsLlamaQuantizeDoes) {
  QuantizeOptions o;
  o.type = DType::Q4_0;
  o.n_layer = 28;
  const std::vector<int64_t> down{8960, 1536}, v{1536, 256};
  EXPECT_EQ(quantized_type("blk.0.ffn_down.weight", down, false, o), DType::Q4_0) << "not activation-aware";
  o.activation_aware = true;
  EXPECT_EQ(quantized_type("blk.0.ffn_down.weight", down, false, o), DType::Q4_1);
  EXPECT_EQ(quantized_type("blk.2.ffn_down.weight", down, false, o), DType::Q4_1);
  EXPECT_EQ(quantized_type("blk.3.ffn_down.weight", down, false, o), DType::Q4_0);
  EXPECT_EQ(quantized_type("blk.0.attn_v.weight", v, false, o), DType::Q4_0);
  EXPECT_EQ(quantized_type("blk.0.ffn_up.weight", {1536, 8960}, false, o), DType::Q4_0);
  EXPECT_EQ(quantized_type("output.weight", {1536, 151936}, true, o), DType::Q6_K);
  o.type = DType::Q5_0;
  EXPECT_EQ(quantized_type("blk.1.ffn_down.weight", down, false, o), DType::Q5_1);
  o.type = DType::Q8_0;
  EXPECT_EQ(quantized_type("blk.1.ffn_down.weight", down, false, o), DType::Q8_0);
  o.type = DType::Q4_0;
  o.pure = true;
  EXPECT_EQ(quantized_type("blk.1.ffn_down.weight", down, false, o), DType::Q4_0) << "--pure: every matrix in TYPE";
  o.pure = false;
  o.n_layer = 0;
  EXPECT_THROW(quantized_type("blk.1.ffn_down.weight", down, false, o), Error) << "the layer count is needed";
}

}  // namespace
}  // namespace kestrel
