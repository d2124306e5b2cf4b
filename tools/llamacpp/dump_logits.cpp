// dump_logits: writes llama.cpp's logits for a list of prompts, as golden fixtures
// for kestrel's model tests (tests/golden/logits/). Our code, using only llama.cpp's
// public C API (llama.h). Built by tools/llamacpp/compile.sh dump_logits.
//
// Usage:
//   dump_logits --model FILE.gguf --out DIR [--threads 1] [--n-gen 32]
//               [--info KEY=VALUE]...            (copied into the JSON's "info")
//               [--case NAME PROMPT_FILE]...     (last-position logits + greedy)
//               [--all-positions NAME PROMPT_FILE] [--stride 16] [--allow-amx]
//
// For every case the prompt (the exact bytes of PROMPT_FILE) is tokenized with
// add_special = parse_special = true, evaluated as one batch from an empty KV cache,
// and then n_gen tokens are generated greedily (argmax, ties -> lowest id), one token
// per decode call. Writes into DIR:
//   NAME.last.f32       n_vocab float32 (little-endian): logits after the prompt's
//                       last token
//   NAME.positions.f32  only for --all-positions: [n_tokens][n_cols] float32, the
//                       logits at every prompt position restricted to the token ids
//                       0, stride, 2*stride, ... (full rows would be n_vocab*4 bytes
//                       each, too large to commit); full-vocab argmax, top1-top2 gap
//                       and logsumexp of every row go into the JSON instead
//   fixtures.json       everything else (see tests/golden/logits/README.md)
//
// AMX: built with g++ 12 and GGML_NATIVE, ggml's AMX matmul path dies with SIGILL on
// any batch of more than one token: g++ 12's _tile_loadconfig intrinsic declares that
// it reads only 8 bytes of the 64-byte tile config, so the compiler drops the stores of
// the tile shapes and tilezero then runs on unconfigured tiles. Unless --allow-amx is
// given we therefore deny the process AMX (a seccomp filter makes the kernel refuse
// arch_prctl(ARCH_REQ_XCOMP_PERM)), exactly as on a CPU or kernel without AMX: ggml
// then drops its AMX buffer type and uses its CPU_REPACK (AVX2/AVX-512) kernels and
// the plain CPU kernels, which is what the fixtures record.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"

namespace {

struct CaseSpec {
  std::string name;
  std::string prompt_file;
  bool all_positions = false;
};

struct Options {
  std::string model;
  std::string out_dir;
  int threads = 1;
  int n_gen = 32;
  int stride = 16;
  bool allow_amx = false;
  std::vector<std::pair<std::string, std::string>> info;
  std::vector<CaseSpec> cases;
};

[[noreturn]] void die(const std::string& msg) { throw std::runtime_error(msg); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_floats(const std::string& path, const std::vector<float>& v) {
  static_assert(sizeof(float) == 4, "float32 expected");
  // x86-64 is little-endian, so the in-memory bytes are the file format.
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) die("cannot write " + path);
  size_t n = std::fwrite(v.data(), sizeof(float), v.size(), f);
  if (std::fclose(f) != 0 || n != v.size()) die("short write to " + path);
}

// --- a minimal JSON writer (strings must end up as valid UTF-8) -------------------

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is invalid.
size_t utf8_len(const std::string& s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  if (n == 2 && c < 0xC2) return 0;                                       // overlong
  if (n == 3 && c == 0xE0 && b(i + 1) < 0xA0) return 0;                   // overlong
  if (n == 3 && c == 0xED && b(i + 1) >= 0xA0) return 0;                  // surrogate
  if (n == 4 && c == 0xF0 && b(i + 1) < 0x90) return 0;                   // overlong
  if (n == 4 && (c > 0xF4 || (c == 0xF4 && b(i + 1) >= 0x90))) return 0;  // > U+10FFFF
  return n;
}

// Quoted JSON string; invalid UTF-8 bytes (a generated token may end mid-character)
// become U+FFFD, so only the human-readable "*_text" fields can be lossy.
std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_len(s, i);
    if (n == 0) {
      o += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"')
      o += "\\\"";
    else if (c == '\\')
      o += "\\\\";
    else if (c == '\n')
      o += "\\n";
    else if (c == '\t')
      o += "\\t";
    else if (c == '\r')
      o += "\\r";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else
      o.append(s, i, n);
    i += n;
  }
  return o + "\"";
}

std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);  // round-trips a float32
  return buf;
}

template <class T, class F>
std::string jarr(const std::vector<T>& v, F fmt) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? "," : "") + fmt(v[i]);
  return o + "]";
}
std::string jints(const std::vector<int32_t>& v) {
  return jarr(v, [](int32_t x) { return std::to_string(x); });
}
std::string jfloats(const std::vector<float>& v) {
  return jarr(v, [](float x) { return jnum(x); });
}

// Makes arch_prctl(ARCH_REQ_XCOMP_PERM, ...) fail with EPERM for this process (see
// the AMX note at the top); every other system call is allowed.
void deny_amx_permission() {
  constexpr unsigned kArchReqXcompPerm = 0x1023;
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_arch_prctl, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArchReqXcompPerm, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    die("cannot install the seccomp filter that disables AMX (use --allow-amx to skip it)");
}

// --- llama.cpp plumbing ------------------------------------------------------------

std::vector<std::string> g_log_notes;  // llama.cpp log lines worth keeping
// "repack: repack tensor NAME with LAYOUT" comes once per tensor; keep counts per
// layout instead, in order of first appearance.
std::vector<std::pair<std::string, int>> g_repack_counts;

void note_repack(const std::string& line) {
  const std::string key = " with ";
  size_t at = line.rfind(key);
  std::string layout = at == std::string::npos ? "?" : line.substr(at + key.size());
  for (auto& [name, count] : g_repack_counts)
    if (name == layout) {
      ++count;
      return;
    }
  g_repack_counts.emplace_back(layout, 1);
}

void log_callback(ggml_log_level level, const char* text, void*) {
  std::string line(text ? text : "");
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  std::string lower = line;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  // Keep the lines that say which attention path and weight layout ran.
  bool wanted = lower.find("flash attention") != std::string::npos ||
                lower.find("flash_attn ") != std::string::npos ||
                lower.find("buffer type") != std::string::npos || lower.find("amx") != std::string::npos ||
                lower.find("repack") != std::string::npos;
  if (lower.rfind("repack: repack tensor", 0) == 0)
    note_repack(line);
  else if (wanted && lower.find("input tensor") == std::string::npos &&
           std::find(g_log_notes.begin(), g_log_notes.end(), line) == g_log_notes.end())
    g_log_notes.push_back(line);
  if (level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

struct TopTwo {
  int32_t id = 0;
  float gap = 0;
};

TopTwo top_two(const float* row, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;  // strict: ties keep the lowest id
  float second = -INFINITY;
  for (int32_t i = 0; i < n; ++i)
    if (i != best && row[i] > second) second = row[i];
  return {best, row[best] - second};
}

double logsumexp(const float* row, int32_t n) {
  double m = *std::max_element(row, row + n), s = 0;
  for (int32_t i = 0; i < n; ++i) s += std::exp(double(row[i]) - m);
  return m + std::log(s);
}

std::string piece(const llama_vocab* vocab, llama_token t) {
  char buf[256];
  int32_t n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, true);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

std::vector<llama_token> tokenize(const llama_vocab* vocab, const std::string& text) {
  std::vector<llama_token> ids(text.size() + 16);
  int32_t n =
      llama_tokenize(vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), true, true);
  if (n < 0) {
    ids.resize(size_t(-n));
    n = llama_tokenize(vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), true, true);
  }
  if (n < 0) die("tokenization failed");
  ids.resize(size_t(n));
  return ids;
}

// Decodes tokens at positions [pos0, pos0 + n) of sequence 0; want_all asks for the
// logits of every position, otherwise only the last one's.
void decode(llama_context* ctx, const std::vector<llama_token>& toks, int32_t pos0, bool want_all) {
  llama_batch batch = llama_batch_init(int32_t(toks.size()), 0, 1);
  batch.n_tokens = int32_t(toks.size());
  for (size_t i = 0; i < toks.size(); ++i) {
    batch.token[i] = toks[i];
    batch.pos[i] = pos0 + int32_t(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = want_all || i + 1 == toks.size();
  }
  int32_t rc = llama_decode(ctx, batch);
  llama_batch_free(batch);
  if (rc != 0) die("llama_decode returned " + std::to_string(rc));
}

const float* logits_at(llama_context* ctx, int32_t i) {
  const float* p = llama_get_logits_ith(ctx, i);
  if (!p) die("no logits for batch index " + std::to_string(i));
  return p;
}

std::string run_case(llama_context* ctx, const llama_vocab* vocab, const Options& opt, const CaseSpec& c,
                     uint32_t n_ctx) {
  const int32_t n_vocab = llama_vocab_n_tokens(vocab);
  const std::string prompt = read_file(c.prompt_file);
  const std::vector<llama_token> ids = tokenize(vocab, prompt);
  if (ids.empty()) die("case " + c.name + ": prompt has no tokens");
  if (ids.size() + size_t(opt.n_gen) > n_ctx) die("case " + c.name + ": prompt + generation exceed n_ctx");

  llama_memory_clear(llama_get_memory(ctx), true);
  decode(ctx, ids, 0, c.all_positions);

  std::ostringstream js;
  js << "{\"name\":" << jstr(c.name) << ",\"prompt\":" << jstr(prompt) << ",\"n_tokens\":" << ids.size()
     << ",\"ids\":" << jints(ids);

  if (c.all_positions) {
    std::vector<float> cols;
    std::vector<int32_t> argmax;
    std::vector<float> gaps, lse;
    int32_t n_cols = 0;
    for (size_t p = 0; p < ids.size(); ++p) {
      const float* row = logits_at(ctx, int32_t(p));
      n_cols = 0;
      for (int32_t t = 0; t < n_vocab; t += opt.stride, ++n_cols) cols.push_back(row[t]);
      TopTwo tt = top_two(row, n_vocab);
      argmax.push_back(tt.id);
      gaps.push_back(tt.gap);
      lse.push_back(float(logsumexp(row, n_vocab)));
    }
    const std::string file = c.name + ".positions.f32";
    write_floats(opt.out_dir + "/" + file, cols);
    js << ",\"positions\":{\"file\":" << jstr(file) << ",\"rows\":" << ids.size()
       << ",\"stride\":" << opt.stride << ",\"n_cols\":" << n_cols << ",\"argmax\":" << jints(argmax)
       << ",\"gaps\":" << jfloats(gaps) << ",\"logsumexp\":" << jfloats(lse) << "}";
  }

  const float* last = logits_at(ctx, int32_t(ids.size()) - 1);
  const std::string last_file = c.name + ".last.f32";
  write_floats(opt.out_dir + "/" + last_file, std::vector<float>(last, last + n_vocab));
  js << ",\"last_logits\":" << jstr(last_file);

  // Greedy: step k picks the argmax of the logits that the previous decode produced.
  std::vector<int32_t> greedy;
  std::vector<float> gaps;
  std::string text;
  const float* row = last;
  for (int k = 0; k < opt.n_gen; ++k) {
    TopTwo tt = top_two(row, n_vocab);
    greedy.push_back(tt.id);
    gaps.push_back(tt.gap);
    text += piece(vocab, tt.id);
    if (k + 1 == opt.n_gen) break;
    decode(ctx, {tt.id}, int32_t(ids.size()) + k, false);
    row = logits_at(ctx, 0);
  }
  js << ",\"greedy\":" << jints(greedy) << ",\"greedy_gaps\":" << jfloats(gaps)
     << ",\"greedy_text\":" << jstr(text) << "}";
  std::fprintf(stderr, "[dump_logits] %-16s %3zu tokens -> %s\n", c.name.c_str(), ids.size(), text.c_str());
  return js.str();
}

Options parse_args(int argc, char** argv) {
  Options o;
  auto need = [&](int i, int n) {
    if (i + n >= argc) die(std::string("missing value after ") + argv[i]);
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--model") {
      need(i, 1);
      o.model = argv[++i];
    } else if (a == "--out") {
      need(i, 1);
      o.out_dir = argv[++i];
    } else if (a == "--threads") {
      need(i, 1);
      o.threads = std::stoi(argv[++i]);
    } else if (a == "--n-gen") {
      need(i, 1);
      o.n_gen = std::stoi(argv[++i]);
    } else if (a == "--stride") {
      need(i, 1);
      o.stride = std::stoi(argv[++i]);
    } else if (a == "--allow-amx")
      o.allow_amx = true;
    else if (a == "--info") {
      need(i, 1);
      std::string kv = argv[++i];
      size_t eq = kv.find('=');
      if (eq == std::string::npos) die("--info wants KEY=VALUE, got " + kv);
      o.info.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    } else if (a == "--case" || a == "--all-positions") {
      need(i, 2);
      CaseSpec c{argv[i + 1], argv[i + 2], a == "--all-positions"};
      i += 2;
      o.cases.push_back(c);
    } else
      die("unknown argument " + a);
  }
  if (o.model.empty() || o.out_dir.empty() || o.cases.empty())
    die("need --model, --out and at least one case");
  if (o.threads < 1 || o.n_gen < 1 || o.stride < 1) die("--threads, --n-gen and --stride must be >= 1");
  return o;
}

int run(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  if (!opt.allow_amx) deny_amx_permission();
  llama_log_set(log_callback, nullptr);
  llama_backend_init();

  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;  // CPU backend only
  llama_model* model = llama_model_load_from_file(opt.model.c_str(), mp);
  if (!model) die("cannot load model " + opt.model);
  const llama_vocab* vocab = llama_model_get_vocab(model);

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 512;
  cp.n_batch = 512;
  cp.n_threads = opt.threads;
  cp.n_threads_batch = opt.threads;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) die("cannot create context");

  std::vector<std::string> cases;
  for (const CaseSpec& c : opt.cases) cases.push_back(run_case(ctx, vocab, opt, c, llama_n_ctx(ctx)));

  char desc[256] = {0};
  llama_model_desc(model, desc, sizeof desc);
  for (const auto& [layout, count] : g_repack_counts)
    g_log_notes.push_back("repack: " + std::to_string(count) + " tensors repacked with " + layout);
  std::ostringstream js;
  js << "{\n\"format\":\"kestrel-logits-golden-1\",\n\"generator\":\"tools/llamacpp/"
        "dump_logits.cpp\",\n\"info\":{";
  for (size_t i = 0; i < opt.info.size(); ++i)
    js << (i ? "," : "") << jstr(opt.info[i].first) << ":" << jstr(opt.info[i].second);
  js << "},\n\"llama_cpp\":{\"backend\":\"CPU\",\"amx\":" << (opt.allow_amx ? "\"allowed\"" : "\"denied\"")
     << ",\"system_info\":" << jstr(llama_print_system_info()) << ",\"log_notes\":" << jarr(g_log_notes, jstr)
     << "},\n"
     << "\"model\":{\"desc\":" << jstr(desc) << ",\"n_params\":" << llama_model_n_params(model)
     << ",\"n_vocab\":" << llama_vocab_n_tokens(vocab) << "},\n"
     << "\"settings\":{\"n_threads\":" << opt.threads << ",\"n_ctx\":" << llama_n_ctx(ctx)
     << ",\"n_batch\":" << llama_n_batch(ctx) << ",\"n_ubatch\":" << llama_n_ubatch(ctx)
     << ",\"flash_attn_type\":" << jstr(llama_flash_attn_type_name(cp.flash_attn_type))
     << ",\"type_k\":" << jstr(ggml_type_name(cp.type_k)) << ",\"type_v\":" << jstr(ggml_type_name(cp.type_v))
     << ",\"add_special\":true,\"parse_special\":true,\"n_gen\":" << opt.n_gen
     << ",\"greedy\":\"argmax, ties to lowest id, one token per decode\"},\n\"cases\":[\n";
  for (size_t i = 0; i < cases.size(); ++i) js << cases[i] << (i + 1 < cases.size() ? ",\n" : "\n");
  js << "]\n}\n";

  std::ofstream out(opt.out_dir + "/fixtures.json", std::ios::binary);
  out << js.str();
  if (!out) die("cannot write " + opt.out_dir + "/fixtures.json");

  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dump_logits: error: %s\n", e.what());
    return 1;
  }
}
