#pragma once
// The A/B scoreboard: the exact baseline and each switch measured in one run,
// as ratios against the baseline, printed as markdown and drawn as an SVG chart.
#include <optional>
#include <string>
#include <vector>

namespace kestrel {

// A mean over interleaved repetitions, with its sample standard deviation.
struct Measured {
  double mean = 0;
  double stddev = 0;
  int n = 0;
};
Measured measure(const std::vector<double>& samples);

struct ScoreRow {
  std::string label;    // "baseline" or "name=value"
  std::string changes;  // what the switch changes
  std::string unsupported;  // non-empty: not run, and why
  Measured pp_ts, tg_ts;    // tokens/s
  double peak_rss_bytes = 0;
  std::optional<double> ppl;       // perplexity on the same tokens
  std::optional<double> kld_mean;  // against the baseline's logits
  std::optional<double> kld_p99;
  std::optional<double> top1_agree;  // fraction of positions with the same argmax
};

struct Scoreboard {
  std::string model;
  std::string settings;  // one line: prompt/gen sizes, threads, chunks, reps
  std::vector<ScoreRow> rows;  // rows[0] is the baseline
};

// Escapes &, <, > and " for SVG text.
std::string xml_escape(const std::string& s);

std::string scoreboard_markdown(const Scoreboard& s);
// A grouped bar chart of prompt / generation / memory ratios per switch, with the
// accuracy figures as labels; a self-contained SVG document.
std::string scoreboard_svg(const Scoreboard& s);

}  // namespace kestrel
