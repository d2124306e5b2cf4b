// kv=cq2 / kv=cq1 through the engine (runtime/engine_core.cpp finds the
// codebooks next to the model): a window over the whole prompt reads only F16
// copies and matches the F16 cache; a short window moves the logits, by less
// than the registry's bound; the codebook file is found, or its absence named;
// and CQ composes with KV-Compress eviction.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "runtime/session.h"
#include "unit/error_text.h"
#include "unit/runtime/tiny_cq.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

using kestrel::testing::error_of;

std::vector<int32_t> long_prompt() {
  std::vector<int32_t> p;
  for (int i = 0; i < 200; ++i) p.push_back(3 + (i * 7) % 50);
  return p;
}

SessionOptions with_kv(DType type, int64_t window) {
  SessionOptions so;
  so.n_ctx = 256;
  so.n_batch = 64;
  so.engine.n_threads = 2;
  so.engine.k_type = so.engine.v_type = type;
  so.engine.cq_window = window;
  return so;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::fabs(double{x}));
  return m;
}

struct TinyWithCq {
  testing::LoadedTinyModel tiny{"session_cq"};
  std::string cq2 = testing::write_cq_sidecar(*tiny.model, kCq2);
  std::string cq1 = testing::write_cq_sidecar(*tiny.model, kCq1);
  ~TinyWithCq() {
    std::filesystem::remove(cq2);
    std::filesystem::remove(cq1);
  }
};

const TinyWithCq& tiny() {
  static TinyWithCq t;
  return t;
}

std::vector<float> prompt_logits(const SessionOptions& so) {
  Session s(*tiny().tiny.model, so);
  const auto l = s.set_history(long_prompt());
  return {l.begin(), l.end()};
}

}  // namespace

TEST(SessionCq, AWindowOverThePromptReadsOnlyCopiesAndMatchesTheF16Cache) {
  const std::vector<float> f16 = prompt_logits(with_kv(DType::F16, 0));
  for (DType t : {DType::CQ2, DType::CQ1}) {
    const std::vector<float> cq = prompt_logits(with_kv(t, 256));
    ASSERT_EQ(cq.size(), f16.size());
    // The same F16 rows; only the kernel's float order differs (float q, two-pass softmax).
    double worst = 0;
    for (size_t i = 0; i < f16.size(); ++i) worst = std::max(worst, std::fabs(double{cq[i]} - f16[i]));
    EXPECT_LT(worst, 1e-3 * max_abs(f16)) << dtype_name(t);
  }
}

TEST(SessionCq, ShortWindowsMoveTheLogitsWithinTheRegistryBound) {
  const std::vector<float> f16 = prompt_logits(with_kv(DType::F16, 0));
  for (DType t : {DType::CQ2, DType::CQ1}) {
    const std::vector<float> cq = prompt_logits(with_kv(t, 16));
    double worst = 0;
    for (size_t i = 0; i < f16.size(); ++i) worst = std::max(worst, std::fabs(double{cq[i]} - f16[i]));
    EXPECT_GT(worst, 0.0) << dtype_name(t) << ": codes were never read";
    EXPECT_LT(worst, 0.5 * max_abs(f16)) << dtype_name(t);  // switches/registry.cpp kv_logits_bound
  }
}

TEST(SessionCq, TheCodebookFileIsFoundOrItsAbsenceNamed) {
  SessionOptions so = with_kv(DType::CQ2, 128);
  so.engine.kv_codebook = tiny().cq1;  // a cq1 file for kv=cq2
  EXPECT_NE(error_of([&] { Session s(*tiny().tiny.model, so); }).find("cq"), std::string::npos);
  so.engine.kv_codebook = tiny().cq2 + ".missing";
  const std::string e = error_of([&] { Session s(*tiny().tiny.model, so); });
  EXPECT_NE(e.find(".missing"), std::string::npos) << e;
  so.engine.kv_codebook = tiny().cq2;  // named explicitly: found
  Session s(*tiny().tiny.model, so);
  EXPECT_TRUE(s.cache().is_cq_cache());
}

// kv=cq2/cq1: the keys' books from the cq2 file, the values' from the cq1
// file (both next to the model, or named); the codes read back within the bound.
TEST(SessionCq, KeysAndValuesOfTwoTypesReadTheirOwnFiles) {
  SessionOptions so = with_kv(DType::CQ2, 16);
  so.engine.v_type = DType::CQ1;
  Session s(*tiny().tiny.model, so);
  const KvCache& c = s.cache();
  EXPECT_EQ(c.k_row_bytes() * 4, static_cast<size_t>(c.shape().head_dim));
  EXPECT_EQ(c.v_row_bytes() * 8, static_cast<size_t>(c.shape().head_dim));
  const CqModelInfo info = cq_model_info(tiny().tiny.model->file());
  const CqCodebooks two = load_cq_codebooks(tiny().cq2, info), one = load_cq_codebooks(tiny().cq1, info);
  const KvHeadView view = c.view(1, 0, 0);
  const size_t i = two.index(1, 0);
  EXPECT_TRUE(std::equal(two.k[i].centroids.begin(), two.k[i].centroids.end(), view.cq.k_centroids));
  EXPECT_TRUE(std::equal(one.v[i].centroids.begin(), one.v[i].centroids.end(), view.cq.v_centroids));
  EXPECT_EQ(view.cq.k_c, 4);
  EXPECT_EQ(view.cq.v_c, 8);

  const std::vector<float> f16 = prompt_logits(with_kv(DType::F16, 0));
  const std::vector<float> mixed = prompt_logits(so);
  double worst = 0;
  for (size_t j = 0; j < f16.size(); ++j) worst = std::max(worst, std::fabs(double{mixed[j]} - f16[j]));
  EXPECT_GT(worst, 0.0);
  EXPECT_LT(worst, 0.5 * max_abs(f16));

  // Named files: the values' file must hold the values' type, and a missing one is named with its flag.
  so.engine.kv_codebook_v = tiny().cq2;
  EXPECT_NE(error_of([&] { Session t(*tiny().tiny.model, so); }).find("cq1 values need cq1 codebooks, not cq2"),
            std::string::npos);
  so.engine.kv_codebook_v = tiny().cq1 + ".missing";
  const std::string e = error_of([&] { Session t(*tiny().tiny.model, so); });
  EXPECT_NE(e.find(".missing"), std::string::npos) << e;
  EXPECT_NE(e.find("--kv-codebook-v"), std::string::npos) << e;
  so.engine.kv_codebook_v = tiny().cq1;
  so.engine.kv_codebook = tiny().cq1;  // the keys' file must hold the keys' type
  EXPECT_NE(error_of([&] { Session t(*tiny().tiny.model, so); }).find("cq2 keys needs cq2 codebooks, not cq1"),
            std::string::npos);
  // CQ keys with plain values: refused, naming the pair.
  SessionOptions half = with_kv(DType::CQ2, 16);
  half.engine.v_type = DType::Q8_0;
  const std::string e2 = error_of([&] { Session t(*tiny().tiny.model, half); });
  EXPECT_NE(e2.find("K cq2 and V q8_0"), std::string::npos) << e2;
}

TEST(SessionCq, ComposesWithKvCompress) {
  SessionOptions so = with_kv(DType::CQ2, 32);
  so.engine.kv_compress = {KvCompressConfig::Mode::Metric, 4, 0};  // kvcompress=4
  Session s(*tiny().tiny.model, so);
  s.set_history(long_prompt());
  EXPECT_GT(s.evicted_blocks(), 0);
  // Copies only for the rows each head still reads from them: the sink block and the window.
  const KvCache& c = s.cache();
  EXPECT_LE(c.copies_held(), int64_t{c.shape().n_layer} * c.shape().n_kv_head * (1 + 32 / KvCache::kBlock + 1));
  const int32_t next = 5;
  const auto l = s.append(std::span<const int32_t>(&next, 1));
  EXPECT_TRUE(std::all_of(l.begin(), l.end(), [](float x) { return std::isfinite(x); }));
}

}  // namespace kestrel
