// The dispatch tables: complete for every format and level, paired as ggml
// pairs weight and activation formats, block layouts sized as GGUF expects,
// and errors (not crashes) for types without kernels.
#include <gtest/gtest.h>

#include "core/error.h"
#include "kernels/blocks.h"
#include "unit/kernels/kernel_test_util.h"

namespace kestrel::kernels::test {
namespace {

TEST(Dispatch, BlockStructsMatchTheTypeTraits) {
  EXPECT_EQ(sizeof(BlockQ4_0), traits(DType::Q4_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ4_1), traits(DType::Q4_1).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_0), traits(DType::Q5_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_1), traits(DType::Q5_1).block_bytes);
  EXPECT_EQ(sizeof(BlockQ8_0), traits(DType::Q8_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ8_1), traits(DType::Q8_1).block_bytes);
  EXPECT_EQ(sizeof(BlockQ4K), traits(DType::Q4_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5K), traits(DType::Q5_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ6K), traits(DType::Q6_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ8K), traits(DType::Q8_K).block_bytes);
  EXPECT_EQ(traits(DType::Q4_K).block_size, kQKK);
  EXPECT_EQ(traits(DType::Q4_0).block_size, kQK);
}

TEST(Dispatch, PairsAndCompleteness) {
  for (const FormatPair& fp : weight_formats()) {
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
      const QuantKernels& k = quant_kernels(fp.weight, isa);
      EXPECT_EQ(k.type, fp.weight);
      EXPECT_EQ(k.vec_dot_type, fp.act) << label(fp.weight, isa);
      EXPECT_NE(k.dequantize_row, nullptr);
      EXPECT_NE(k.quantize_row, nullptr);
      EXPECT_NE(k.vec_dot, nullptr);
      // Never a level the CPU cannot run.
      EXPECT_TRUE(isa_supported(k.isa)) << label(fp.weight, isa);
      EXPECT_LE(static_cast<int>(k.isa), static_cast<int>(isa));
    }
  }
  for (DType t : {DType::Q8_1, DType::Q8_K}) {
    EXPECT_TRUE(has_quant_kernels(t));
    EXPECT_NE(quant_kernels(t).quantize_row, nullptr);
    EXPECT_NE(quant_kernels(t).dequantize_row, nullptr);
    EXPECT_EQ(quant_kernels(t).vec_dot, nullptr) << "activation-only format";
  }
}

TEST(Dispatch, SimdLevelsProvideTheirOwnDots) {
  // On a host with the level, the hot-path entries must not silently be the
  // scalar ones (a registration slip would only show up as slowness).
  for (Isa isa : simd_isas())
    for (const FormatPair& fp : dot_formats())
      EXPECT_NE(quant_kernels(fp.weight, isa).vec_dot, quant_kernels(fp.weight, Isa::Scalar).vec_dot)
          << label(fp.weight, isa);
}

TEST(Dispatch, SimdLevelsDequantizeTheBlockFormats) {
  // Dequantization feeds the embedding lookup: the block formats have their own.
  for (Isa isa : simd_isas())
    for (const FormatPair& fp : dot_formats())
      if (traits(fp.weight).block_size > 1)
        EXPECT_NE(quant_kernels(fp.weight, isa).dequantize_row, quant_kernels(fp.weight, Isa::Scalar).dequantize_row)
            << label(fp.weight, isa);
}

TEST(Dispatch, UnsupportedTypesThrow) {
  for (DType t : {DType::I8, DType::I32, DType::F64}) {
    EXPECT_FALSE(has_quant_kernels(t));
    EXPECT_THROW(quant_kernels(t, Isa::Scalar), Error);
    try {
      quant_kernels(t);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(dtype_name(t))), std::string::npos) << e.what();
    }
  }
}

TEST(Dispatch, DefaultIsBestIsa) {
  EXPECT_EQ(&quant_kernels(DType::Q4_K), &quant_kernels(DType::Q4_K, best_isa()));
}

}  // namespace
}  // namespace kestrel::kernels::test
