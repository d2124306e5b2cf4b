#include "runtime/scoreboard.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "runtime/scoreboard_compare.h"

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

namespace kestrel {

// Regression detection: a board compared with itself moves nothing; a switch
// row whose ratio fell beyond its noise, a baseline that got slower, a higher
// PPL are regressions; noise-sized moves are not.
TEST(ScoreboardCompare, FlagsWhatMovedBeyondNoiseAndNothingElse) {
  Scoreboard before;
  before.model = "m.gguf";
  before.settings = "pp8";
  before.rows = {
      {"baseline", "exact", "", measure({100, 102, 98}), measure({10, 10.2, 9.8}), 1e8, 12.0, {}, {}, {}},
      {"kv=q8_0", "KV", "", measure({110, 112, 108}), measure({11, 11.2, 10.8}), 9e7, 12.1, 0.01, 0.1, 0.97}};
  const Scoreboard round = scoreboard_from_json(scoreboard_json(before));
  ASSERT_EQ(round.rows.size(), 2u);
  EXPECT_EQ(round.rows[1].kld_mean, 0.01);
  EXPECT_FALSE(round.rows[0].kld_mean.has_value());
  ScoreComparison same = compare_scoreboards(before, round);
  EXPECT_TRUE(same.changes.empty());
  EXPECT_FALSE(same.regressed());

  // The whole machine 3 % slower (ratios unchanged, baseline within 5 %): nothing.
  Scoreboard drift = before;
  for (auto& r : drift.rows) r.pp_ts.mean *= 0.97, r.tg_ts.mean *= 0.97;
  EXPECT_TRUE(compare_scoreboards(before, drift).changes.empty());

  Scoreboard worse = before;
  worse.rows[1].tg_ts = measure({8, 8.1, 7.9});  // tg ratio 1.10 -> 0.80
  worse.rows[1].ppl = 12.5;                      // +3.3 %
  worse.rows[1].top1_agree = 0.9;
  const ScoreComparison c = compare_scoreboards(before, worse);
  EXPECT_TRUE(c.regressed());
  std::string all;
  for (const auto& ch : c.changes) all += ch.text() + "\n";
  EXPECT_NE(all.find("kv=q8_0 tg ratio 1.1 -> 0.8 (worse)"), std::string::npos) << all;
  EXPECT_NE(all.find("kv=q8_0 PPL 12.1 -> 12.5 (worse)"), std::string::npos) << all;
  EXPECT_NE(all.find("kv=q8_0 top-1 agreement 0.97 -> 0.9 (worse)"), std::string::npos) << all;
  EXPECT_EQ(c.changes.size(), 3u) << all;

  // Faster beyond noise: listed, not a regression.
  Scoreboard better = before;
  better.rows[1].pp_ts = measure({150, 151, 149});
  const ScoreComparison b = compare_scoreboards(before, better);
  ASSERT_EQ(b.changes.size(), 1u);
  EXPECT_FALSE(b.regressed());

  // A wide spread hides a move of the same size.
  Scoreboard noisy = before;
  noisy.rows[1].tg_ts = measure({4, 12, 8});  // mean 8, standard error 2.3
  noisy.rows[0].tg_ts = measure({5, 15, 10});
  EXPECT_TRUE(compare_scoreboards(before, noisy).changes.empty());

  EXPECT_THROW(scoreboard_from_json("{}"), Error);
  EXPECT_THROW(scoreboard_from_json("not json"), Error);
  EXPECT_THROW(scoreboard_from_json(R"({"kestrel_scoreboard":1,"model":"m","settings":"","rows":[]})"), Error);
}

}  // namespace kestrel
