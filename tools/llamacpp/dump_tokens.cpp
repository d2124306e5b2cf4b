// Reference dumps of llama.cpp's tokenizer and chat templates, for kestrel's
// golden tests (tests/golden/make_tokenizer_fixtures.sh runs it). Our code; it
// only calls llama.cpp's public C API (llama.h, gguf.h).
//
//   dump_tokens meta     MODEL.gguf                  ids, flags, EOG set, attributes
//   dump_tokens lines    MODEL.gguf FILE MAX [check] ids of each line of FILE (binary; MAX 0 = all);
//                                                    check: fail unless each line detokenizes back
//   dump_tokens whole    MODEL.gguf FILE             token count and FNV-1a hash of FILE
//   dump_tokens hard     MODEL.gguf CASES            ids and detokenizations per case
//   dump_tokens pieces   MODEL.gguf STRIDE           token pieces (sampled + special)
//   dump_tokens write-spm VOCAB.tsv OUT.gguf [noprefix]  synthetic SentencePiece vocab
//   dump_tokens chat     INPUTS                      llama_chat_apply_template outputs
//   dump_tokens retag    MODEL.gguf PRE OUT.gguf     vocab-only copy with another tokenizer.ggml.pre
//
// Text files use one escaped string per field: \\ \n \r \t \xHH are decoded,
// everything else is literal (UTF-8). Binary outputs are written as hex.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gguf.h"
#include "llama.h"

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "dump_tokens: %s\n", msg.c_str());
  std::exit(1);
}

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t b = 0;
  for (;;) {
    size_t e = s.find(sep, b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    if (c == 'n') out += '\n';
    else if (c == 'r') out += '\r';
    else if (c == 't') out += '\t';
    else if (c == '\\') out += '\\';
    else if (c == 'x' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out += char(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      out += '\\';
      out += c;
    }
  }
  return out;
}

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

// Lines of a text file, without comments (#...) and blank lines, split at tabs.
std::vector<std::vector<std::string>> read_table(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  for (const std::string& line : split(read_binary(path), '\n')) {
    if (line.empty() || line[0] == '#') continue;
    rows.push_back(split(line, '\t'));
  }
  return rows;
}

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

const llama_vocab* load_vocab(const std::string& path) {
  llama_model_params p = llama_model_default_params();
  p.vocab_only = true;
  llama_model* m = llama_model_load_from_file(path.c_str(), p);
  if (!m) die("cannot load " + path);
  return llama_model_get_vocab(m);  // the model is kept for the process lifetime
}

std::vector<llama_token> tokenize(const llama_vocab* v, const std::string& text, bool add_special, bool parse_special) {
  std::vector<llama_token> ids(text.size() + 8);
  int n = llama_tokenize(v, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), add_special, parse_special);
  if (n < 0) {
    ids.resize(-n);
    n = llama_tokenize(v, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), add_special, parse_special);
  }
  if (n < 0) die("llama_tokenize failed");
  ids.resize(n);
  return ids;
}

std::string detokenize(const llama_vocab* v, const std::vector<llama_token>& ids, bool remove_special, bool unparse) {
  std::string out(ids.size() * 8 + 16, '\0');
  int n = llama_detokenize(v, ids.data(), int32_t(ids.size()), &out[0], int32_t(out.size()), remove_special, unparse);
  if (n < 0) {
    out.resize(-n);
    n = llama_detokenize(v, ids.data(), int32_t(ids.size()), &out[0], int32_t(out.size()), remove_special, unparse);
  }
  out.resize(n);
  return out;
}

std::string piece(const llama_vocab* v, llama_token id, bool special) {
  std::string out(64, '\0');
  int n = llama_token_to_piece(v, id, &out[0], int32_t(out.size()), 0, special);
  if (n < 0) {
    out.resize(-n);
    n = llama_token_to_piece(v, id, &out[0], int32_t(out.size()), 0, special);
  }
  out.resize(n);
  return out;
}

std::string join_ids(const std::vector<llama_token>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

// --- commands ---

int cmd_meta(const std::string& model) {
  const llama_vocab* v = load_vocab(model);
  const int n = llama_vocab_n_tokens(v);
  std::printf("n_vocab %d\nbos %d\neos %d\neot %d\nadd_bos %d\nadd_eos %d\n", n, llama_vocab_bos(v),
              llama_vocab_eos(v), llama_vocab_eot(v), int(llama_vocab_get_add_bos(v)), int(llama_vocab_get_add_eos(v)));
  std::printf("eog");
  for (int i = 0; i < n; ++i)
    if (llama_vocab_is_eog(v, i)) std::printf(" %d", i);
  std::printf("\n");
  // Attributes of every token that is not plain normal.
  for (int i = 0; i < n; ++i) {
    const int a = int(llama_vocab_get_attr(v, i));
    if (a != LLAMA_TOKEN_ATTR_NORMAL) std::printf("attr %d %d\n", i, a);
  }
  return 0;
}

int cmd_lines(const std::string& model, const std::string& file, long max_lines, bool check) {
  const llama_vocab* v = load_vocab(model);
  const std::string data = read_binary(file);
  // A line is everything up to and including its '\n' (so CRLF lines keep "\r\n");
  // a final piece without '\n' would be a line too.
  long count = 0;
  size_t b = 0;
  while (b < data.size() && (max_lines <= 0 || count < max_lines)) {
    size_t e = data.find('\n', b);
    e = e == std::string::npos ? data.size() : e + 1;
    const std::string line = data.substr(b, e - b);
    const auto ids = tokenize(v, line, false, false);
    if (check && detokenize(v, ids, false, false) != line)
      die("line " + std::to_string(count + 1) + " does not round-trip through llama_detokenize");
    std::printf("%s\n", join_ids(ids).c_str());
    b = e;
    ++count;
  }
  return 0;
}

int cmd_whole(const std::string& model, const std::string& file) {
  const llama_vocab* v = load_vocab(model);
  const auto ids = tokenize(v, read_binary(file), false, false);
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the ids as little-endian int32
  for (llama_token t : ids)
    for (int k = 0; k < 4; ++k) {
      h ^= (uint32_t(t) >> (8 * k)) & 0xFF;
      h *= 1099511628211ull;
    }
  std::printf("%zu %016llx\n", ids.size(), (unsigned long long)h);
  return 0;
}

// CASES rows: name, text  or  name, *N, text (text repeated N times).
std::vector<std::pair<std::string, std::string>> read_cases(const std::string& path) {
  std::vector<std::pair<std::string, std::string>> cases;
  for (const auto& row : read_table(path)) {
    if (row.size() == 2) {
      cases.emplace_back(row[0], unescape(row[1]));
    } else if (row.size() == 3 && !row[1].empty() && row[1][0] == '*') {
      std::string t;
      const std::string unit = unescape(row[2]);
      for (long i = std::atol(row[1].c_str() + 1); i > 0; --i) t += unit;
      cases.emplace_back(row[0], t);
    } else {
      die("bad case row in " + path + ": " + row[0]);
    }
  }
  return cases;
}

int cmd_hard(const std::string& model, const std::string& cases_path) {
  const llama_vocab* v = load_vocab(model);
  for (const auto& [name, text] : read_cases(cases_path)) {
    for (int mode = 0; mode < 2; ++mode) {
      const bool special = mode == 1;  // add_special and parse_special together
      std::vector<llama_token> ids;
      try {
        ids = tokenize(v, text, special, special);
      } catch (const std::exception&) {  // llama.cpp throws on code points above U+10FFFF
        std::printf("%s\t%d%d\tEXCEPTION\n", name.c_str(), int(special), int(special));
        continue;
      }
      // Detokenizations: plain, with special tokens rendered, with BOS/EOS removed.
      // "=" stands for the input text (first column) or the first column (others).
      const std::string d00 = detokenize(v, ids, false, false);
      const std::string d01 = detokenize(v, ids, false, true);
      const std::string d10 = detokenize(v, ids, true, false);
      std::printf("%s\t%d%d\t%s\t%s\t%s\t%s\n", name.c_str(), int(special), int(special), join_ids(ids).c_str(),
                  d00 == text ? "=" : hex(d00).c_str(), d01 == d00 ? "=" : hex(d01).c_str(),
                  d10 == d00 ? "=" : hex(d10).c_str());
    }
  }
  return 0;
}

int cmd_pieces(const std::string& model, int stride) {
  const llama_vocab* v = load_vocab(model);
  const int n = llama_vocab_n_tokens(v);
  for (int i = 0; i < n; ++i) {
    if (i % stride != 0 && llama_vocab_get_attr(v, i) == LLAMA_TOKEN_ATTR_NORMAL) continue;
    std::printf("%d\t%s\t%s\n", i, hex(piece(v, i, false)).c_str(), hex(piece(v, i, true)).c_str());
  }
  return 0;
}

// VOCAB.tsv rows: type, score, escaped token text (row index = id).
int cmd_write_spm(const std::string& tsv, const std::string& out, bool noprefix) {
  std::vector<std::string> texts;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const auto& row : read_table(tsv)) {
    if (row.size() != 3) die("bad vocab row in " + tsv);
    types.push_back(std::atoi(row[0].c_str()));
    scores.push_back(std::strtof(row[1].c_str(), nullptr));
    texts.push_back(unescape(row[2]));
  }
  std::vector<const char*> ptrs;
  for (const auto& t : texts) ptrs.push_back(t.c_str());
  gguf_context* ctx = gguf_init_empty();
  gguf_set_val_str(ctx, "general.architecture", "llama");
  gguf_set_val_str(ctx, "tokenizer.ggml.model", "llama");
  gguf_set_arr_str(ctx, "tokenizer.ggml.tokens", ptrs.data(), ptrs.size());
  gguf_set_arr_data(ctx, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores.data(), scores.size());
  gguf_set_arr_data(ctx, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types.data(), types.size());
  if (noprefix) {
    // The other SentencePiece flavour: no space prefix, EOS instead of BOS.
    gguf_set_val_bool(ctx, "tokenizer.ggml.add_space_prefix", false);
    gguf_set_val_bool(ctx, "tokenizer.ggml.add_bos_token", false);
    gguf_set_val_bool(ctx, "tokenizer.ggml.add_eos_token", true);
  }
  if (!gguf_write_to_file(ctx, out.c_str(), false)) die("cannot write " + out);
  gguf_free(ctx);
  return 0;
}

// A metadata-only copy (no tensors) whose pre-tokenizer name is replaced: runs a
// real vocabulary through another family's regexes.
int cmd_retag(const std::string& model, const std::string& pre, const std::string& out) {
  gguf_init_params params = {true, nullptr};
  gguf_context* src = gguf_init_from_file(model.c_str(), params);
  if (!src) die("cannot read " + model);
  gguf_context* dst = gguf_init_empty();
  gguf_set_kv(dst, src);
  gguf_set_val_str(dst, "tokenizer.ggml.pre", pre.c_str());
  if (!gguf_write_to_file(dst, out.c_str(), false)) die("cannot write " + out);
  gguf_free(dst);
  gguf_free(src);
  return 0;
}

// INPUTS rows: T name template (escaped) | M list role content (escaped).
int cmd_chat(const std::string& inputs) {
  std::vector<std::pair<std::string, std::string>> templates;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> lists;
  std::vector<std::string> list_order;
  for (const auto& row : read_table(inputs)) {
    if (row.size() == 3 && row[0] == "T") {
      templates.emplace_back(row[1], unescape(row[2]));
    } else if (row.size() == 4 && row[0] == "M") {
      if (!lists.count(row[1])) list_order.push_back(row[1]);
      lists[row[1]].emplace_back(unescape(row[2]), unescape(row[3]));
    } else {
      die("bad chat input row in " + inputs);
    }
  }
  for (const auto& [tname, tmpl] : templates) {
    for (const auto& lname : list_order) {
      const auto& msgs = lists[lname];
      std::vector<llama_chat_message> chat;
      for (const auto& m : msgs) chat.push_back({m.first.c_str(), m.second.c_str()});
      for (int add_ass = 0; add_ass < 2; ++add_ass) {
        std::vector<char> buf(4096);
        int n = llama_chat_apply_template(tmpl.c_str(), chat.data(), chat.size(), add_ass, buf.data(), int32_t(buf.size()));
        if (n > int(buf.size())) {
          buf.resize(n);
          n = llama_chat_apply_template(tmpl.c_str(), chat.data(), chat.size(), add_ass, buf.data(), int32_t(buf.size()));
        }
        const std::string out = n < 0 ? "ERR" : hex(std::string(buf.data(), n));
        std::printf("%s\t%s\t%d\t%s\n", tname.c_str(), lname.c_str(), add_ass, out.c_str());
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  const std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 2 && a[0] == "meta") return cmd_meta(a[1]);
  if ((a.size() == 4 || a.size() == 5) && a[0] == "lines")
    return cmd_lines(a[1], a[2], std::atol(a[3].c_str()), a.size() == 5 && a[4] == "check");
  if (a.size() == 3 && a[0] == "whole") return cmd_whole(a[1], a[2]);
  if (a.size() == 3 && a[0] == "hard") return cmd_hard(a[1], a[2]);
  if (a.size() == 3 && a[0] == "pieces") return cmd_pieces(a[1], std::atoi(a[2].c_str()));
  if ((a.size() == 3 || a.size() == 4) && a[0] == "write-spm") return cmd_write_spm(a[1], a[2], a.size() == 4 && a[3] == "noprefix");
  if (a.size() == 2 && a[0] == "chat") return cmd_chat(a[1]);
  if (a.size() == 4 && a[0] == "retag") return cmd_retag(a[1], a[2], a[3]);
  die("usage: see the comment at the top of tools/llamacpp/dump_tokens.cpp");
}
