#include "switches/registry.h"

#include <gtest/gtest.h>

#include "core/error.h"

#include <string>

namespace kestrel {

TEST(Switches, ParsesAndValidatesSettings) {
  auto list = parse_switch_list("isa=scalar,kv=f32;threads=1");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].label(), "isa=scalar");
  EXPECT_EQ(list[1].value, "f32");
  EXPECT_EQ(list[2].name, "threads");
  EXPECT_THROW(parse_switch("nope=1"), Error);
  EXPECT_THROW(parse_switch("kv=q9"), Error);
  EXPECT_THROW(parse_switch("threads=0"), Error);
  EXPECT_THROW(parse_switch("threads=two"), Error);
  EXPECT_THROW(parse_switch("kv"), Error);
  EXPECT_THROW(parse_switch("=f16"), Error);
  EXPECT_EQ(parse_switch("matmul=vecdot").value, "vecdot");
  EXPECT_THROW(parse_switch("matmul=gpu"), Error);
}

// kv takes two CQ types as K/V and reports them back so; kv_k and kv_v take no
// CQ type alone and say where it goes.
TEST(Switches, KvTakesTwoCqTypesAsKeysSlashValues) {
  EngineConfig c;
  apply_switch(c, parse_switch("kv=cq2/cq1"));
  EXPECT_EQ(c.k_type, DType::CQ2);
  EXPECT_EQ(c.v_type, DType::CQ1);
  EXPECT_EQ(kv_value(c), "cq2/cq1");
  EXPECT_EQ(find_switch("kv").current(c), "cq2/cq1");
  EXPECT_THROW(parse_switch("kv=cq2/q8_0"), Error);
  EXPECT_THROW(parse_switch("kv=cq2/"), Error);
  try {
    (void)parse_switch("kv_v=cq1");
    ADD_FAILURE() << "kv_v=cq1 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kv=cq2/cq1"), std::string::npos) << e.what();
  }
}

TEST(Switches, EverySwitchNamesWhatItChangesAndScalarAlwaysRuns) {
  for (const auto& s : switch_specs()) {
    EXPECT_FALSE(s.changes.empty()) << s.name;
    EXPECT_TRUE(static_cast<bool>(s.unsupported)) << s.name;
  }
  EXPECT_EQ(find_switch("isa").unsupported("scalar"), "");
}

// attn: the algorithm reaches its slot and is reported back; sage and int8
// read the f16 cache only, and any other KV type is refused naming what works.
TEST(Switches, AttnInstallsTheAlgorithmAndRefusesKvTypesWithoutKernels) {
  for (const char* v : {"exact", "sage", "int8"}) {
    EngineConfig c;
    apply_switch(c, parse_switch(std::string("attn=") + v));
    EXPECT_EQ(find_switch("attn").current(c), v);
    EXPECT_NO_THROW(check_engine_config(c)) << v;  // with the default f16 cache
    EXPECT_NE(engine_settings_text(c).find(std::string("attn=") + v), std::string::npos);
  }
  EXPECT_THROW(parse_switch("attn=flash"), Error);
  // int8 reads INT8 K and V from a q8_0 cache, or quantizes an f16 cache
  // itself.
  EngineConfig c;
  apply_switches(c, parse_switch_list("kv=q8_0,attn=int8"));
  EXPECT_NO_THROW(check_engine_config(c));
  apply_switches(c, parse_switch_list("kv=q4_0"));
  try {
    check_engine_config(c);
    FAIL() << "attn=int8 over a q4_0 cache has no kernels";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("attn=int8"), std::string::npos) << what;
    EXPECT_NE(what.find("kv=q4_0"), std::string::npos) << what;
    EXPECT_NE(what.find("use kv=f16 or kv=q8_0"), std::string::npos) << what;
    EXPECT_NE(what.find("int8: K f16 V f16, K q8_0 V q8_0"), std::string::npos) << what;
  }
  // sage stores a block-quantized K smoothed (any V), but has no bf16 kernels.
  EngineConfig sq;
  apply_switches(sq, parse_switch_list("kv_k=q4_0,kv_v=q8_0,attn=sage"));
  EXPECT_NO_THROW(check_engine_config(sq));
  apply_switches(sq, parse_switch_list("kv_k=bf16"));
  try {
    check_engine_config(sq);
    FAIL() << "attn=sage over a bf16 K has no kernels";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("kv_k=q8_0, q4_0"), std::string::npos) << what;
    EXPECT_NE(what.find("sage: K f16 V f16, K any of q8_0, q4_0, q4_1, q5_0, q5_1 with V any of f32, f16"),
              std::string::npos)
        << what;
  }
  c.attention = kernels::AttentionAlgo::Exact;
  EXPECT_NO_THROW(check_engine_config(c));  // exact reads every KV type
}

// kvcompress and kv_budget: every value installs and reads back; kv_budget
// is off or a positive integer; each is one slot (set twice: refused).
TEST(Switches, KvCompressAndKvBudgetRoundTrip) {
  const SwitchSpec& kvc = find_switch("kvcompress");
  for (const auto& v : kvc.values) {
    EngineConfig c;
    apply_switch(c, parse_switch("kvcompress=" + v));
    EXPECT_EQ(kvc.current(c), v);
    EXPECT_EQ(kvc.effect(v), v == "off" ? SwitchEffect::Speed : SwitchEffect::Evicts);
  }
  EngineConfig c;
  apply_switches(c, parse_switch_list("kvcompress=window:8,kv_budget=512"));
  EXPECT_EQ(c.kv_compress.mode, KvCompressConfig::Mode::Window);
  EXPECT_EQ(c.kv_compress.rate, 8);
  EXPECT_EQ(c.kv_compress.budget, 512);
  const std::string text = engine_settings_text(c);
  EXPECT_NE(text.find("kvcompress=window:8"), std::string::npos) << text;
  EXPECT_NE(text.find("kv_budget=512"), std::string::npos) << text;
  EXPECT_NE(engine_settings_text(EngineConfig{}).find("kv_budget=off"), std::string::npos);
  apply_switch(c, parse_switch("kv_budget=off"));
  EXPECT_EQ(c.kv_compress.budget, 0);
  EXPECT_THROW(parse_switch("kv_budget=0"), Error);
  EXPECT_THROW(parse_switch("kv_budget=-5"), Error);
  EXPECT_THROW(parse_switch("kvcompress=3"), Error);
  EXPECT_THROW(parse_switch("kvcompress=window:3"), Error);
  EngineConfig d;
  EXPECT_THROW(apply_switches(d, parse_switch_list("kv_budget=64,kv_budget=128")), Error);
  EXPECT_THROW(apply_switches(d, parse_switch_list("kvcompress=2,kvcompress=4")), Error);
}

}  // namespace kestrel
