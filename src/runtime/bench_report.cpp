// Printers for bench results: llama-bench's markdown table, JSON and CSV.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"
#include "runtime/bench.h"
#include "runtime/drafter.h"

namespace kestrel {
namespace {

using Json = nlohmann::ordered_json;

// The scalar fields, in output order (llama-bench's names where it has them).
Json fields(const BenchResult& r) {
  Json j;
  j["backends"] = "CPU";
  j["model_filename"] = r.model.filename;
  j["model_type"] = r.model.type;
  j["model_size"] = r.model.size;
  j["model_n_params"] = r.model.n_params;
  j["n_batch"] = r.test.n_batch;
  j["n_threads"] = r.engine.n_threads;
  j["type_k"] = std::string(dtype_name(r.engine.k_type));
  j["type_v"] = std::string(dtype_name(r.engine.v_type));
  j["n_prompt"] = r.test.n_prompt;
  j["n_gen"] = r.test.n_gen;
  j["n_depth"] = r.test.n_depth;
  j["test_time"] = r.test_time;
  j["avg_ns"] = r.avg_ns;
  j["stddev_ns"] = r.stddev_ns;
  j["avg_ts"] = r.avg_ts;
  j["stddev_ts"] = r.stddev_ts;
  j["isa"] = std::string(isa_name(r.engine.isa));
  j["kv_type"] = kv_value(r.engine);  // the `kv` switch's spelling: "q8_0", or "q8_0/f16" for K and V apart
  j["peak_rss_bytes"] = r.peak_rss_bytes;
  j["spec_type"] = std::string(decode_policy_name(r.test.decode.policy));
  j["n_drafted"] = r.drafted;
  j["n_accept"] = r.accepted;
  j["n_target_passes"] = r.target_passes;
  if (r.teal_sparsity >= 0.0) j["teal_sparsity"] = r.teal_sparsity;
  return j;
}

std::string text_of(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%f", v.get<double>());
    return buf;
  }
  return v.dump();
}

class JsonPrinter : public BenchPrinter {
 public:
  explicit JsonPrinter(std::ostream& out) : out_(out) {}
  void header() override { out_ << "[\n"; }
  void row(const BenchResult& r) override {
    Json j = fields(r);
    // Every switch's value as the test ran (the host's report of its engine).
    Json sw = Json::object();
    for (const auto& s : engine_settings(r.engine)) sw[s.name] = s.value;
    j["switches"] = sw;
    j["samples_ns"] = r.samples_ns;
    j["samples_ts"] = r.samples_ts;
    out_ << (first_ ? "" : ",\n") << "  " << j.dump() << std::flush;
    first_ = false;
  }
  void footer() override { out_ << (first_ ? "" : "\n") << "]\n" << std::flush; }

 private:
  std::ostream& out_;
  bool first_ = true;
};

class CsvPrinter : public BenchPrinter {
 public:
  explicit CsvPrinter(std::ostream& out) : out_(out) {}
  void header() override {
    const Json sample = fields(BenchResult{});
    bool first = true;
    for (const auto& item : sample.items()) {
      out_ << (first ? "" : ",") << item.key();
      first = false;
    }
    out_ << "\n" << std::flush;
  }
  // Every value quoted, quotes doubled (as llama-bench writes CSV).
  void row(const BenchResult& r) override {
    bool first = true;
    const Json values = fields(r);  // named: items() refers into it
    for (const auto& item : values.items()) {
      std::string q = "\"";
      for (char ch : text_of(item.value())) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      out_ << (first ? "" : ",") << q << "\"";
      first = false;
    }
    out_ << "\n" << std::flush;
  }

 private:
  std::ostream& out_;
};

class MarkdownPrinter : public BenchPrinter {
 public:
  MarkdownPrinter(std::ostream& out, const BenchGrid& g) : out_(out) {
    // Negative widths: left-aligned (text), positive: right-aligned (numbers).
    cols_ = {{"model", -30}, {"size", 10}, {"params", 10}, {"backend", -10}, {"threads", 7}, {"isa", -7}};
    bool kv_shown = g.kv_types.size() > 1 || (g.kv_types.size() == 1 && g.kv_types[0] != "f16");
    // Other switches the grid sets (--switch, --kvcompress, ...) get a column,
    // as llama-bench shows a parameter that is not at its default.
    for (const auto& sw : g.switches) {
      if (sw.name == "kv" || sw.name == "kv_k" || sw.name == "kv_v")
        kv_shown = true;
      else if (sw.name != "threads" && sw.name != "isa")
        shown_switches_.push_back(sw.name);
    }
    if (kv_shown) {
      cols_.push_back({"type_k", 6});
      cols_.push_back({"type_v", 6});
    }
    if (!shown_switches_.empty()) cols_.push_back({"switches", -20});
    for (const auto& sw : g.switches)
      if (sw.name == "teal" && sw.value != "off") cols_.push_back({"sparsity", 8});
    if (!g.policies.empty()) {
      cols_.push_back({"accept", 7});
      cols_.push_back({"tok/pass", 8});
    }
    cols_.push_back({"peak RSS", 10});
    cols_.push_back({"test", 15});
    cols_.push_back({"t/s", 20});
  }
  void header() override {
    std::string a = "|", b = "|";
    for (const auto& [name, w] : cols_) {
      // Appends piecewise: g++ 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
      a.append(" ").append(pad(name, w)).append(" |");
      b.append(" ").append(std::abs(w) - 1, '-').append(w > 0 ? ":" : "-").append(" |");
    }
    out_ << a << "\n" << b << "\n" << std::flush;
  }
  void row(const BenchResult& r) override {
    std::string line = "|";
    for (const auto& [name, w] : cols_) {
      std::string v;
      int width = w;
      if (name == "model") v = r.model.type;
      else if (name == "size") v = bytes_text(r.model.size);
      else if (name == "params") v = params_text(r.model.n_params);
      else if (name == "backend") v = "CPU";
      else if (name == "threads") v = std::to_string(r.engine.n_threads);
      else if (name == "isa") v = std::string(isa_name(r.engine.isa));
      else if (name == "type_k") v = std::string(dtype_name(r.engine.k_type));
      else if (name == "type_v") v = std::string(dtype_name(r.engine.v_type));
      else if (name == "switches") v = switches_text(r.engine);
      else if (name == "accept")
        v = r.drafted > 0 ? printf_text("%.1f %%", 100.0 * static_cast<double>(r.accepted) / r.drafted, 0) : "-";
      else if (name == "tok/pass")
        v = r.target_passes > 0 ? printf_text("%.2f", static_cast<double>(r.generated) / r.target_passes, 0) : "-";
      else if (name == "peak RSS") v = bytes_text(r.peak_rss_bytes);
      else if (name == "sparsity")
        v = r.teal_sparsity >= 0.0 ? printf_text("%.1f %%", 100.0 * r.teal_sparsity, 0) : "-";
      else if (name == "test") v = r.test.name();
      else if (name == "t/s") {
        v = printf_text("%.2f \xC2\xB1 %.2f", r.avg_ts, r.stddev_ts);
        width += 1;  // "±" is two bytes but one column
      }
      line.append(" ").append(pad(v, width)).append(" |");
    }
    out_ << line << "\n" << std::flush;
  }
  void footer() override { out_ << "\nbuild: kestrel\n" << std::flush; }

 private:
  // name=value of the grid's shown switches, as the engine ran them.
  std::string switches_text(const EngineConfig& e) const {
    std::string text;
    for (const auto& s : engine_settings(e))
      if (std::find(shown_switches_.begin(), shown_switches_.end(), s.name) != shown_switches_.end())
        text.append(text.empty() ? "" : " ").append(s.name).append("=").append(s.value);
    return text;
  }
  std::vector<std::string> shown_switches_;
  static std::string printf_text(const char* f, double a, double b) {
    char buf[96];
    std::snprintf(buf, sizeof buf, f, a, b);
    return buf;
  }
  static std::string bytes_text(uint64_t n) {
    return n < (1ull << 30) ? printf_text("%.2f MiB", n / 1024.0 / 1024.0, 0)
                            : printf_text("%.2f GiB", n / 1024.0 / 1024.0 / 1024.0, 0);
  }
  static std::string params_text(uint64_t n) {
    return n < 1000ull * 1000 * 1000 ? printf_text("%.2f M", n / 1e6, 0) : printf_text("%.2f B", n / 1e9, 0);
  }
  static std::string pad(const std::string& s, int w) {
    const size_t n = static_cast<size_t>(std::abs(w));
    if (s.size() >= n) return s;
    return w < 0 ? s + std::string(n - s.size(), ' ') : std::string(n - s.size(), ' ') + s;
  }

  std::ostream& out_;
  std::vector<std::pair<std::string, int>> cols_;
};

}  // namespace

BenchFormat parse_bench_format(std::string_view name) {
  if (name == "md" || name == "markdown") return BenchFormat::Markdown;
  if (name == "json") return BenchFormat::Json;
  if (name == "csv") return BenchFormat::Csv;
  fail("bench: unknown output format '", name, "' (supported: md, json, csv)");
}

std::unique_ptr<BenchPrinter> make_bench_printer(BenchFormat format, std::ostream& out, const BenchGrid& grid) {
  switch (format) {
    case BenchFormat::Json: return std::make_unique<JsonPrinter>(out);
    case BenchFormat::Csv: return std::make_unique<CsvPrinter>(out);
    case BenchFormat::Markdown: break;
  }
  return std::make_unique<MarkdownPrinter>(out, grid);
}

}  // namespace kestrel
