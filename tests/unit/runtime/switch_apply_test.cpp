// Switches as the runtime applies them: the `matmul` switch reaches the
// forward pass (a Q8_0 model computes the same logits, within float rounding,
// on the panel kernels and on vec_dot, and only the panel path packs weights).
#include "runtime/switch_apply.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "model/quantize.h"
#include "ops/matmul.h"
#include "platform/cpu.h"
#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

SessionOptions with(const std::string& setting) {
  SessionOptions o;
  o.n_ctx = 64;
  o.n_threads = 2;
  apply_switch(o, parse_switch(setting));
  return o;
}

TEST(SwitchApply, MatmulSwitchSetsTheKernelChoice) {
  if (isa_supported(Isa::Avx512)) {
    EXPECT_TRUE(with("matmul=panels").matmul.allow_panels);
    EXPECT_EQ(with("matmul=panels").matmul.amx, AmxUse::Never);
  }
  EXPECT_FALSE(with("matmul=vecdot").matmul.allow_panels);
  const CpuFeatures& f = cpu_features();
  if (f.amx_tile && f.amx_int8 && isa_supported(Isa::Avx512))
    EXPECT_EQ(with("matmul=amx").matmul.amx, AmxUse::Always);
  else
    EXPECT_THROW(with("matmul=amx"), Error);
}

TEST(SwitchApply, MatmulSwitchReachesTheForwardPass) {
  if (!isa_supported(Isa::Avx512)) GTEST_SKIP() << "panel kernels need AVX-512";
  testing::LoadedTinyModel f32("switch_f32");
  const std::string q8 = f32.path + ".q8_0.gguf";
  QuantizeOptions qo;
  qo.type = DType::Q8_0;
  qo.pure = true;
  quantize_model(f32.path, q8, qo);
  const auto model = load_model(q8);
  const std::vector<int32_t> prompt = model->tokenizer().encode("The cat sat on the mat and looked around", true, false);

  const size_t before = packed_weight_bytes();
  Session vecdot(*model, with("matmul=vecdot"));
  const std::vector<float> a = vecdot.append_all_logits(prompt);
  EXPECT_EQ(packed_weight_bytes(), before) << "vec_dot must not pack weights";
  Session panels(*model, with("matmul=panels"));
  const std::vector<float> b = panels.append_all_logits(prompt);
  EXPECT_GT(packed_weight_bytes(), before) << "the panel path packs the weights it uses";

  ASSERT_EQ(a.size(), b.size());
  double worst = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
    mag = std::max(mag, static_cast<double>(std::fabs(a[i])));
  }
  // Same integer products, different float summation order: differences at the
  // level of float rounding, not of a wrong kernel.
  EXPECT_LT(worst, 1e-4 * std::max(1.0, mag)) << "max |diff| " << worst;
  EXPECT_GT(worst, 0.0) << "identical bits: the switch did not change the kernels";
  std::filesystem::remove(q8);
}

}  // namespace
}  // namespace kestrel
