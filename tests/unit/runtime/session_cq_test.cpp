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
