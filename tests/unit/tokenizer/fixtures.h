#pragma once
// Reading the tokenizer golden fixtures (tests/golden/tokenizer/, written by
// tests/golden/make_tokenizer_fixtures.sh from llama.cpp) and finding the models.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace kestrel::tokfix {

inline std::filesystem::path golden_dir() {
  return std::filesystem::path(KESTREL_SOURCE_DIR) / "tests" / "golden" / "tokenizer";
}

inline std::filesystem::path model_path(const std::string& file) {
  std::filesystem::path cache;
  if (const char* c = std::getenv("KESTREL_CACHE"); c && *c) {
    cache = c;
  } else {
    const char* home = std::getenv("HOME");
    cache = std::filesystem::path(home ? home : ".") / ".cache" / "kestrel";
  }
  return cache / "models" / file;
}
inline std::filesystem::path smollm2_path() { return model_path("SmolLM2-135M-Instruct.Q4_1.gguf"); }
inline std::filesystem::path qwen2_path() { return model_path("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"); }
inline std::filesystem::path gemma3_path() { return model_path("gemma-3-270m-q4_k_m.gguf"); }
inline std::filesystem::path wikitext_path() {
  if (const char* w = std::getenv("KESTREL_WIKITEXT"); w && *w) return w;
  return std::filesystem::path(KESTREL_SOURCE_DIR).parent_path() / "shared" / "data" / "wikitext-2-raw" /
         "wiki.test.raw";
}

inline std::string read_binary(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t b = 0;
  for (;;) {
    const size_t e = s.find(sep, b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) return out;
    b = e + 1;
  }
}

// Lines of a fixture file without the final empty one.
inline std::vector<std::string> lines(const std::filesystem::path& p) {
  auto v = split(read_binary(p), '\n');
  if (!v.empty() && v.back().empty()) v.pop_back();
  return v;
}

// Non-comment, non-blank lines split at tabs.
inline std::vector<std::vector<std::string>> table(const std::filesystem::path& p) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : lines(p))
    if (!l.empty() && l[0] != '#') rows.push_back(split(l, '\t'));
  return rows;
}

inline int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The fixture text escapes: \\ \n \r \t \xHH; anything else literal.
inline std::string unescape(const std::string& s) {
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

inline std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out += char(hexval(h[i]) * 16 + hexval(h[i + 1]));
  return out;
}

inline std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  int32_t v;
  while (in >> v) ids.push_back(v);
  return ids;
}

inline std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s;
}

// Printable form of arbitrary bytes for failure messages.
inline std::string show(const std::string& s, size_t max = 200) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02X", c);
      out += b;
    } else out += char(c);
  }
  if (s.size() > max) out += "...";
  return out;
}

// hard_set.txt: (name, text) in file order.
inline std::vector<std::pair<std::string, std::string>> hard_cases() {
  std::vector<std::pair<std::string, std::string>> cases;
  for (const auto& row : table(golden_dir() / "hard_set.txt")) {
    if (row.size() == 2) {
      cases.emplace_back(row[0], unescape(row[1]));
    } else {
      std::string t;
      const std::string unit = unescape(row[2]);
      for (long i = std::atol(row[1].c_str() + 1); i > 0; --i) t += unit;
      cases.emplace_back(row[0], t);
    }
  }
  return cases;
}

// The synthetic SentencePiece vocab, built directly (no GGUF): the defaults of
// a "llama" vocab, or the "noprefix" flavour (no space prefix, EOS, no BOS).
inline VocabSpec spm_spec(bool noprefix) {
  VocabSpec s = default_vocab_spec("llama", "");
  for (const auto& row : table(golden_dir() / "spm_vocab.tsv")) {
    s.token_types.push_back(std::atoi(row[0].c_str()));
    s.scores.push_back(std::strtof(row[1].c_str(), nullptr));
    s.tokens.push_back(unescape(row[2]));
  }
  if (noprefix) {
    s.add_space_prefix = false;
    s.add_bos = false;
    s.add_eos = true;
  }
  return s;
}

inline Tokenizer load_model_tokenizer(const std::filesystem::path& p) {
  const gguf::File f = gguf::File::open(p.string());
  return Tokenizer(vocab_spec_from_gguf(f));
}

}  // namespace kestrel::tokfix
