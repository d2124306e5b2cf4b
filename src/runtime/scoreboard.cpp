#include "runtime/scoreboard.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/printf.h"

namespace kestrel {
namespace {

const auto num = printf_string;

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

Measured measure(const std::vector<double>& samples) {
  Measured m;
  m.n = static_cast<int>(samples.size());
  if (samples.empty()) return m;
  for (double x : samples) m.mean += x;
  m.mean /= m.n;
  if (m.n > 1) {
    double ss = 0;
    for (double x : samples) ss += (x - m.mean) * (x - m.mean);
    m.stddev = std::sqrt(ss / (m.n - 1));
  }
  return m;
}

std::string scoreboard_markdown(const Scoreboard& s) {
  std::ostringstream o;
  o << "model: " << s.model << "  \n" << s.settings << "\n\n";
  o << "| switch | pp t/s | pp ratio | tg t/s | tg ratio | peak RSS MiB | mem ratio | PPL | ΔPPL | mean KLD | KLD p99 "
       "| top-1 agree | what it changes |\n";
  o << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  const ScoreRow& base = s.rows.front();
  for (const auto& r : s.rows) {
    o << "| " << r.label << " | ";
    if (!r.unsupported.empty()) {
      o << "not run: " << r.unsupported << " | | | | | | | | | | | " << r.changes << " |\n";
      continue;
    }
    o << num("%.1f", r.pp_ts.mean) << " ± " << num("%.1f", r.pp_ts.stddev) << " | "
      << num("%.3f", ratio(r.pp_ts.mean, base.pp_ts.mean)) << " | " << num("%.1f", r.tg_ts.mean) << " ± "
      << num("%.1f", r.tg_ts.stddev) << " | " << num("%.3f", ratio(r.tg_ts.mean, base.tg_ts.mean)) << " | "
      << num("%.1f", r.peak_rss_bytes / (1024.0 * 1024.0)) << " | "
      << num("%.3f", ratio(r.peak_rss_bytes, base.peak_rss_bytes)) << " | ";
    o << (r.ppl ? num("%.4f", *r.ppl) : "") << " | ";
    o << (r.ppl && base.ppl ? num("%+.4f", *r.ppl - *base.ppl) : "") << " | ";
    o << (r.kld_mean ? num("%.6f", *r.kld_mean) : "") << " | ";
    o << (r.kld_p99 ? num("%.6f", *r.kld_p99) : "") << " | ";
    o << (r.top1_agree ? num("%.2f%%", 100.0 * *r.top1_agree) : "") << " | " << r.changes << " |\n";
  }
  return o.str();
}

std::string scoreboard_svg(const Scoreboard& s) {
  // Layout: one group of three bars (pp, tg, memory ratio) per row.
  const double group_w = 150, bar_w = 36, left = 60, top = 66, plot_h = 260;
  const double width = std::max(640.0, left + group_w * s.rows.size() + 40), height = top + plot_h + 110;
  double max_ratio = 1.2;
  const ScoreRow& base = s.rows.front();
  for (const auto& r : s.rows) {
    if (!r.unsupported.empty()) continue;
    max_ratio = std::max({max_ratio, ratio(r.pp_ts.mean, base.pp_ts.mean), ratio(r.tg_ts.mean, base.tg_ts.mean),
                          ratio(r.peak_rss_bytes, base.peak_rss_bytes)});
  }
  max_ratio = std::ceil(max_ratio * 5) / 5;
  auto y_of = [&](double v) { return top + plot_h * (1.0 - v / max_ratio); };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << left << "\" y=\"20\" font-size=\"15\">kestrel ab: " << xml_escape(s.model) << "</text>\n";
  o << "<text x=\"" << left << "\" y=\"38\" fill=\"#555\">" << xml_escape(s.settings) << "</text>\n";
  o << "<text x=\"" << left << "\" y=\"54\" fill=\"#555\">ratios to the baseline: speed higher is faster, "
       "memory lower is smaller</text>\n";
  for (double v = 0; v <= max_ratio + 1e-9; v += 0.2) {
    o << "<line x1=\"" << left << "\" x2=\"" << width - 20 << "\" y1=\"" << y_of(v) << "\" y2=\"" << y_of(v)
      << "\" stroke=\"" << (std::fabs(v - 1.0) < 1e-9 ? "#000" : "#ddd") << "\"/>\n";
    o << "<text x=\"" << left - 8 << "\" y=\"" << y_of(v) + 4 << "\" text-anchor=\"end\">" << num("%.1f", v)
      << "</text>\n";
  }
  const char* colors[3] = {"#3b7dd8", "#e0873a", "#7a9a3a"};
  const char* names[3] = {"prompt t/s", "generation t/s", "peak memory"};
  for (int k = 0; k < 3; ++k) {
    o << "<rect x=\"" << left + 170 * k << "\" y=\"" << height - 22 << "\" width=\"12\" height=\"12\" fill=\""
      << colors[k] << "\"/><text x=\"" << left + 170 * k + 18 << "\" y=\"" << height - 12 << "\">" << names[k]
      << "</text>\n";
  }
  for (size_t i = 0; i < s.rows.size(); ++i) {
    const ScoreRow& r = s.rows[i];
    const double x0 = left + group_w * i + 15;
    if (r.unsupported.empty()) {
      const double vals[3] = {ratio(r.pp_ts.mean, base.pp_ts.mean), ratio(r.tg_ts.mean, base.tg_ts.mean),
                              ratio(r.peak_rss_bytes, base.peak_rss_bytes)};
      for (int k = 0; k < 3; ++k) {
        const double x = x0 + k * (bar_w + 4), y = y_of(vals[k]);
        o << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << bar_w << "\" height=\"" << (top + plot_h - y)
          << "\" fill=\"" << colors[k] << "\"/>\n";
        o << "<text x=\"" << x + bar_w / 2 << "\" y=\"" << y - 4 << "\" text-anchor=\"middle\" font-size=\"10\">"
          << num("%.2f", vals[k]) << "</text>\n";
      }
    }
    const double label_y = top + plot_h + 18;
    o << "<text x=\"" << x0 + 58 << "\" y=\"" << label_y << "\" text-anchor=\"middle\">" << xml_escape(r.label)
      << "</text>\n";
    std::string acc = !r.unsupported.empty() ? "not run on this CPU"
                      : r.kld_mean ? "KLD " + num("%.4f", *r.kld_mean) + ", top-1 " + num("%.1f%%", 100 * r.top1_agree.value_or(0))
                                   : (i == 0 ? "exact baseline" : "");
    o << "<text x=\"" << x0 + 58 << "\" y=\"" << label_y + 16 << "\" text-anchor=\"middle\" font-size=\"10\" fill=\"#555\">"
      << xml_escape(acc) << "</text>\n";
    if (r.ppl && base.ppl)
      o << "<text x=\"" << x0 + 58 << "\" y=\"" << label_y + 30
        << "\" text-anchor=\"middle\" font-size=\"10\" fill=\"#555\">PPL " << num("%.3f", *r.ppl)
        << (i ? " (" + num("%+.3f", *r.ppl - *base.ppl) + ")" : "") << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace kestrel
