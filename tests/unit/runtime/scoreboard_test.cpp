#include "runtime/scoreboard.h"

#include <gtest/gtest.h>

namespace kestrel {

TEST(Scoreboard, RatiosAgainstTheBaselineAndEscapedSvg) {
  EXPECT_NEAR(measure({1, 2, 3}).mean, 2.0, 1e-12);
  EXPECT_NEAR(measure({1, 2, 3}).stddev, 1.0, 1e-12);
  Scoreboard s;
  s.model = "m<1>.gguf";
  s.settings = "pp8, tg4";
  ScoreRow base{"baseline", "exact", "", measure({100, 100}), measure({10, 10}), 200.0 * 1024 * 1024, 12.0, {}, {}, {}};
  ScoreRow fast{"kv=f32", "KV cache", "", measure({150, 150}), measure({5, 5}), 100.0 * 1024 * 1024, 12.5, 0.01, 0.1, 0.97};
  ScoreRow skip{"isa=avx512", "kernels", "this CPU lacks avx512", {}, {}, 0, {}, {}, {}, {}};
  s.rows = {base, fast, skip};
  const std::string md = scoreboard_markdown(s);
  EXPECT_NE(md.find("| kv=f32 | 150.0 ± 0.0 | 1.500 | 5.0 ± 0.0 | 0.500 | 100.0 | 0.500 | 12.5000 | +0.5000 | 0.010000 "
                    "| 0.100000 | 97.00% | KV cache |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("not run: this CPU lacks avx512"), std::string::npos);
  const std::string svg = scoreboard_svg(s);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("m&lt;1&gt;.gguf"), std::string::npos);
  EXPECT_EQ(svg.find("m<1>"), std::string::npos);
  EXPECT_NE(svg.find(">1.50<"), std::string::npos);  // pp ratio bar label
}

}  // namespace kestrel
