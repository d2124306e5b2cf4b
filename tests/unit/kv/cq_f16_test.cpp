// CQ codebooks held as F16 (kv/cq_codebook.h, kv/cq_sidecar.h): the rounding
// of learnt or filed F32 centroids to the nearest F16, the exact way back, the
// refusal of values F16 cannot hold, and sidecars that older builds wrote
// (arbitrary F32 values) loading rounded.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "gguf/gguf.h"
#include "kv/cq_codebook.h"
#include "kv/cq_sidecar.h"
#include "unit/error_text.h"
#include "unit/kv/cq_sidecar_fixtures.h"
#include "unit/random_values.h"

namespace kestrel {
namespace {

using kestrel::testing::cq_load_error;
using kestrel::testing::cq_temp_path;
using kestrel::testing::error_of;
using kestrel::testing::normal_values;
using kestrel::testing::small_cq_model;

// h is a nearest F16 to x: neither neighbour of h (the next finite F16 values
// of the same sign, by magnitude bits) is strictly nearer. Independent of the
// rounding code: it only widens.
bool is_nearest_f16(uint16_t h, float x) {
  const uint16_t sign = h & 0x8000u, mag = h & 0x7FFFu;
  if (mag >= 0x7C00u) return false;  // infinite or NaN
  const double err = std::fabs(static_cast<double>(fp16_to_f32(h)) - x);
  for (int step : {-1, 1}) {
    const int m = int{mag} + step;
    if (m < 0 || m >= 0x7C00) continue;
    if (std::fabs(static_cast<double>(fp16_to_f32(static_cast<uint16_t>(sign | m))) - x) < err) return false;
  }
  // Across zero: a value near 0 of the other sign is as near as +-0.
  return mag != 0 || std::fabs(x) <= 0x1.0p-25;
}

// Values over F16's whole range: ordinary, subnormal (below 2^-14), near the
// largest finite (65504), and exactly representable ones.
std::vector<float> values_across_f16(size_t n) {
  std::vector<float> v = normal_values(n, 3);
  for (size_t i = 0; i < n; ++i) {
    if (i % 4 == 1) v[i] *= 1e-6f;  // subnormal in F16
    if (i % 4 == 2) v[i] = v[i] > 0 ? 65000.0f + v[i] : -65000.0f + v[i];
    if (i % 16 == 3) v[i] = static_cast<float>(static_cast<int>(i % 200) - 100) * 0.25f;  // exact in F16
  }
  return v;
}

TEST(CqF16Books, CentroidsAreHeldAsTheNearestF16) {
  for (CqSpec spec : {kCq2, kCq1}) {
    CqCodebook book = make_cq_codebook(spec, 32);
    const std::vector<float> x = values_across_f16(book.centroids.size());
    set_cq_centroids(book, x);
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_TRUE(is_nearest_f16(book.centroids[i], x[i]))
          << cq_spec_name(spec) << " value " << x[i] << " held as " << fp16_to_f32(book.centroids[i]);
    // Half a unit of the last place at most: u_h = 2^-11 relative for normal values.
    const int g = 1, code = 7, ch = 2;
    const float want = x[(static_cast<size_t>(g) * spec.channels_per_group + ch) * spec.n_codes() + code];
    EXPECT_LE(std::fabs(book.value(g, code, ch) - want), 0x1.0p-11 * std::fabs(want) + 0x1.0p-25);
  }
}

TEST(CqF16Books, WidenedCentroidsRoundTripBitForBit) {
  CqCodebook book = make_cq_codebook(kCq2, 64);
  set_cq_centroids(book, values_across_f16(book.centroids.size()));
  const std::vector<float> wide = cq_centroids_f32(book);
  for (size_t i = 0; i < wide.size(); ++i) ASSERT_EQ(wide[i], fp16_to_f32(book.centroids[i])) << i;
  CqCodebook again = make_cq_codebook(kCq2, 64);
  set_cq_centroids(again, wide);
  EXPECT_EQ(again.centroids, book.centroids);
  EXPECT_EQ(book.bytes(), 64u * 256u * 2u);  // F16: 2 bytes per channel and code
}

TEST(CqF16Books, RefusesAValueF16CannotHold) {
  CqCodebook book = make_cq_codebook(kCq2, 16);
  std::vector<float> x(book.centroids.size(), 1.0f);
  x[37] = 65520.0f;  // the smallest value that rounds to infinity
  std::string e = error_of([&] { set_cq_centroids(book, x); });
  EXPECT_NE(e.find("value 65520 at index 37 does not fit F16"), std::string::npos) << e;
  x[37] = 65519.0f;  // rounds down to the largest finite, 65504
  set_cq_centroids(book, x);
  EXPECT_EQ(book.value(0, 37 % 256, 0), 65504.0f);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(error_of([&] { set_cq_centroids(book, x); }).find("at index 5 does not fit F16"), std::string::npos);
  EXPECT_NE(error_of([&] { set_cq_centroids(book, std::vector<float>(3)); }).find("3 centroid values"),
            std::string::npos);
}

// A sidecar as builds that held F32 wrote it: the same metadata, tensors of
// arbitrary F32 values (not F16-exact). It loads, each centroid the nearest F16.
gguf::Writer f32_sidecar(const CqModelInfo& m, const std::vector<float>& values, int bad_index = -1) {
  const CqCodebooks books = make_cq_codebooks(kCq2, m);
  const gguf::File meta = gguf::File::parse(cq_sidecar_writer(books).to_bytes());
  gguf::Writer w;
  w.copy_metadata(meta);
  for (const char* kv : {"k", "v"})
    for (int layer = 0; layer < m.n_layer; ++layer)
      for (int head = 0; head < m.n_kv_head; ++head) {
        std::vector<float> t = values;
        if (bad_index >= 0 && std::string(kv) == "v" && layer == 1 && head == 0) t[bad_index] = 1e6f;
        w.add_tensor("cq." + std::string(kv) + ".blk." + std::to_string(layer) + ".head." + std::to_string(head),
                     DType::F32, {256, 4, m.k_head_dim / 4}, gguf::bytes_of<float>(t));
      }
  return w;
}

TEST(CqF16Books, AnF32SidecarLoadsRoundedToTheNearestF16) {
  const CqModelInfo m = small_cq_model();
  const std::vector<float> values = normal_values(static_cast<size_t>(m.k_head_dim) * 256, 9, 3.0f);
  const std::string path = cq_temp_path("f32_values");
  f32_sidecar(m, values).write(path);
  const CqCodebooks back = load_cq_codebooks(path, m);
  std::filesystem::remove(path);
  int inexact = 0;
  for (const auto* list : {&back.k, &back.v})
    for (const CqCodebook& b : *list)
      for (size_t i = 0; i < values.size(); ++i) {
        ASSERT_TRUE(is_nearest_f16(b.centroids[i], values[i])) << i;
        inexact += fp16_to_f32(b.centroids[i]) != values[i];
      }
  EXPECT_GT(inexact, 0) << "the values were F16-exact: the rounding went untested";
}

TEST(CqF16Books, RefusesASidecarCentroidF16CannotHold) {
  const CqModelInfo m = small_cq_model();
  const std::vector<float> values = normal_values(static_cast<size_t>(m.k_head_dim) * 256, 9);
  const std::string e = cq_load_error(f32_sidecar(m, values, 300), m, "f16_range");
  EXPECT_NE(e.find("tensor cq.v.blk.1.head.0: CQ: centroid value 1e+06 at index 300 does not fit F16"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace kestrel
