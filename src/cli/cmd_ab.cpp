// kestrel ab: the exact baseline and each switch on the same model in one run.
// Every measurement is a child `kestrel bench` / `kestrel perplexity` process, so
// each configuration's peak memory is its own; speed runs are interleaved
// (baseline, s1, s2, baseline, ...) so drift on a noisy machine hits all alike.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/kv_compressor.h"
#include "runtime/scoreboard.h"
#include "runtime/scoreboard_compare.h"
#include "switches/registry.h"

namespace kestrel::cli {
namespace {

std::string self_path() {
  std::array<char, 4096> buf{};
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) fail("ab: cannot find the kestrel executable");
  return std::string(buf.data(), static_cast<size_t>(n));
}

std::string quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

// Runs a command, returns its stdout; stderr passes through (progress).
std::string run(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) fail("ab: cannot run ", cmd);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int rc = pclose(p);
  if (rc != 0) fail("ab: command failed (exit ", rc, "): ", cmd);
  return out;
}

std::optional<double> grab(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex(pattern))) return std::stod(m[1].str());
  return std::nullopt;
}

// "a=x+b=y,c=z": one row per comma-separated item, each row the switches its
// '+' joins (a technique that needs two slots, e.g. attn=sage+kv_k=q8_0).
std::vector<std::vector<SwitchSetting>> parse_rows(const std::string& text) {
  std::vector<std::vector<SwitchSetting>> rows;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find_first_of(",;", start);
    if (end == std::string::npos) end = text.size();
    std::vector<SwitchSetting> row;
    const std::string item = text.substr(start, end - start);
    for (size_t a = 0; a <= item.size();) {
      size_t b = item.find('+', a);
      if (b == std::string::npos) b = item.size();
      if (b > a) row.push_back(parse_switch(item.substr(a, b - a)));
      a = b + 1;
    }
    if (!row.empty()) rows.push_back(std::move(row));
    start = end + 1;
  }
  return rows;
}

}  // namespace

void add_ab_command(CLI::App& app) {
  struct Opts {
    std::string model, file, switches, out_dir = "ab-out", baseline, kv_codebook, kv_codebook_v;
    int ctx = 256, chunks = 4, n_prompt = 128, n_gen = 32, reps = 3, threads = 0;
    bool list = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("ab", "baseline vs switches in one run: speed, memory and accuracy scoreboard");
  cmd->add_option("-m,--model", o->model, "GGUF model (default model if absent)");
  add_kv_codebook_flags(*cmd, o->kv_codebook, o->kv_codebook_v);
  cmd->add_option("--switches", o->switches,
                  "comma-separated name=value settings, each compared with the baseline; join settings with + to "
                  "compare them together (attn=sage+kv_k=q8_0)");
  cmd->add_option("-f,--file", o->file, "text for perplexity/KLD (default: ../shared/data/wikitext-2-raw/wiki.test.raw)");
  cmd->add_option("-c,--ctx-size", o->ctx, "perplexity context");
  cmd->add_option("--chunks", o->chunks, "perplexity chunks");
  cmd->add_option("-p,--n-prompt", o->n_prompt, "prompt tokens for the speed test");
  cmd->add_option("-n,--n-gen", o->n_gen, "generated tokens for the speed test");
  cmd->add_option("-r,--repetitions", o->reps, "interleaved speed repetitions");
  cmd->add_option("-t,--threads", o->threads, "threads (default: all cores)");
  cmd->add_option("-o,--out-dir", o->out_dir, "where scoreboard.md and scoreboard.svg go");
  cmd->add_flag("--list", o->list, "list the registered switches and exit");
  cmd->add_option("--baseline", o->baseline,
                  "a scoreboard.json from an earlier run: compare every figure with it and exit 1 when one got worse "
                  "beyond its noise (regression detection)");
  cmd->callback([o] {
    if (o->list) {
      for (const auto& s : switch_specs()) {
        std::string vals;
        for (const auto& v : s.values) vals += (vals.empty() ? "" : "|") + v;
        if (vals.empty()) vals = "N";
        std::cout << s.name << "=" << vals << "  (baseline " << (s.baseline.empty() ? "machine default" : s.baseline)
                  << ")\n    " << s.changes << "\n";
        for (const auto& v : s.values)
          if (const auto why = s.unsupported(v); !why.empty()) std::cout << "    " << v << ": " << why << "\n";
      }
      return;
    }
    const auto settings = parse_rows(o->switches);
    if (settings.empty()) fail("ab: give --switches name=value[,name=value...] (see kestrel ab --list)");
    bool uses_cq = false;
    for (const auto& row : settings) {  // a row's settings must go together: checked here, not half-way
      EngineConfig c;
      apply_switches(c, row);
      uses_cq = uses_cq || uses_cq_cache(c);
    }
    refuse_unread_cq_codebooks(o->kv_codebook, o->kv_codebook_v, uses_cq, "ab: ", "row");
    const std::string exe = quote(self_path());
    const std::string model = o->model.empty() ? default_model_path() : o->model;
    std::optional<Scoreboard> previous;  // read first: a bad file fails before the measurements
    if (!o->baseline.empty()) previous = scoreboard_from_json(read_file(o->baseline), o->baseline);
    std::string file = o->file;
    if (file.empty()) file = "../shared/data/wikitext-2-raw/wiki.test.raw";
    if (!std::filesystem::exists(file)) fail("ab: text file ", file, " not found (give -f)");
    std::filesystem::create_directories(o->out_dir);
    const std::string threads = o->threads > 0 ? " -t " + std::to_string(o->threads) : "";
    const std::string base_kld = (std::filesystem::path(o->out_dir) / "base.kld").string();

    Scoreboard board;
    board.model = std::filesystem::path(model).filename().string();
    board.settings = "pp" + std::to_string(o->n_prompt) + ", tg" + std::to_string(o->n_gen) + ", " +
                     std::to_string(o->reps) + " interleaved reps; perplexity " + std::to_string(o->chunks) +
                     " chunks of " + std::to_string(o->ctx) + " on " + std::filesystem::path(file).filename().string();
    board.rows.push_back({"baseline", "the exact reference path", "", {}, {}, 0, {}, {}, {}, {}});
    // Each row's engine flags: -t for every row but one that sets threads itself
    // (one switch is never given two values).
    std::vector<std::string> flags = {threads};
    // Rows that evict KV blocks (kvcompress, kv_budget) have no perplexity
    // here: `kestrel perplexity` refuses them (one forward pass per chunk);
    // `kestrel longeval --ppl` measures them.
    std::vector<bool> evicts = {false};
    for (const auto& row : settings) {
      EngineConfig c;
      apply_switches(c, row);
      evicts.push_back(kv_compress_spec(c.kv_compress).on());
      ScoreRow r;
      std::string f;
      bool sets_threads = false;
      for (const auto& s : row) {
        r.label += (r.label.empty() ? "" : "+") + s.label();
        r.changes += (r.changes.empty() ? "" : "; ") + find_switch(s.name).changes;
        if (r.unsupported.empty()) r.unsupported = find_switch(s.name).unsupported(s.value);
        sets_threads = sets_threads || s.name == "threads";
        f += " --switch " + quote(s.label());
      }
      // The CQ rows read the codebooks named here (the other rows' children would refuse them).
      if (uses_cq_cache(c)) {
        if (!o->kv_codebook.empty()) f += " --kv-codebook " + quote(o->kv_codebook);
        if (!o->kv_codebook_v.empty()) f += " --kv-codebook-v " + quote(o->kv_codebook_v);
      }
      board.rows.push_back(r);
      flags.push_back((sets_threads ? "" : threads) + f);
    }

    // Accuracy: the baseline saves its logits, each switch is compared with them.
    std::cerr << "ab: baseline perplexity\n";
    const std::string common = " -m " + quote(model) + " -c " + std::to_string(o->ctx) + " --chunks " +
                               std::to_string(o->chunks);
    const std::string base_out = run(exe + " perplexity" + common + flags[0] + " -f " + quote(file) +
                                     " --kl-divergence-base " + quote(base_kld));
    board.rows[0].ppl = grab(base_out, R"(Final estimate: PPL = ([0-9.eE+-]+))");
    for (size_t i = 1; i < board.rows.size(); ++i) {
      ScoreRow& r = board.rows[i];
      if (!r.unsupported.empty()) continue;
      if (evicts[i]) {
        std::cerr << "ab: " << r.label << ": no perplexity or KLD (KV-Compress evicts after a prompt, and perplexity "
                  << "scores a chunk in one pass; kestrel longeval --ppl measures it)\n";
        continue;
      }
      std::cerr << "ab: perplexity and KLD with " << r.label << "\n";
      const std::string out = run(exe + " perplexity" + common + " --kl-divergence " + quote(base_kld) + flags[i]);
      r.ppl = grab(out, R"(Mean PPL\(Q\)\s*:\s*([0-9.eE+-]+))");
      r.kld_mean = grab(out, R"(Mean\s+KLD:\s*([0-9.eE+-]+))");
      r.kld_p99 = grab(out, R"(99\.0%\s+KLD:\s*([0-9.eE+-]+))");
      if (auto same = grab(out, R"(Same top p:\s*([0-9.eE+-]+))")) r.top1_agree = *same / 100.0;
    }

    // Speed and memory, interleaved across configurations.
    std::vector<std::vector<double>> pp(board.rows.size()), tg(board.rows.size());
    for (int rep = 0; rep < o->reps; ++rep) {
      for (size_t i = 0; i < board.rows.size(); ++i) {
        if (!board.rows[i].unsupported.empty()) continue;
        std::cerr << "ab: speed rep " << rep + 1 << "/" << o->reps << " " << board.rows[i].label << "\n";
        const std::string out = run(exe + " bench -m " + quote(model) + " -p " + std::to_string(o->n_prompt) +
                                    " -n " + std::to_string(o->n_gen) + " -r 1 -o json" + flags[i]);
        for (const auto& t : nlohmann::json::parse(out)) {
          const double ts = t.at("avg_ts").get<double>();
          (t.at("n_prompt").get<int>() > 0 ? pp : tg)[i].push_back(ts);
          board.rows[i].peak_rss_bytes =
              std::max(board.rows[i].peak_rss_bytes, t.at("peak_rss_bytes").get<double>());
        }
      }
    }
    for (size_t i = 0; i < board.rows.size(); ++i) {
      board.rows[i].pp_ts = measure(pp[i]);
      board.rows[i].tg_ts = measure(tg[i]);
    }

    const std::string md = scoreboard_markdown(board);
    std::cout << md;
    const auto dir = std::filesystem::path(o->out_dir);
    std::ofstream(dir / "scoreboard.md") << md;
    std::ofstream(dir / "scoreboard.svg") << scoreboard_svg(board);
    std::ofstream(dir / "scoreboard.json") << scoreboard_json(board);
    std::cerr << "ab: wrote " << (dir / "scoreboard.md").string() << ", " << (dir / "scoreboard.svg").string()
              << " and " << (dir / "scoreboard.json").string() << "\n";
    if (previous) {
      const ScoreComparison c = compare_scoreboards(*previous, board);
      std::cout << "\nAgainst " << o->baseline << ":\n";
      for (const auto& u : c.unmatched) std::cout << "  " << u << "\n";
      for (const auto& ch : c.changes) std::cout << "  " << ch.text() << "\n";
      if (c.changes.empty()) std::cout << "  no figure moved beyond its noise\n";
      if (c.regressed()) fail("ab: figures got worse than ", o->baseline, " beyond their noise (listed above)");
    }
  });
}

}  // namespace kestrel::cli
