#pragma once
// Comparisons of a Tokenizer against one vocab's llama.cpp fixtures. Each check
// reports its first few mismatches in full (input, both id lists) and then a count.
#include <gtest/gtest.h>

#include <map>

#include "fixtures.h"

namespace kestrel::tokfix {

constexpr int kMaxReported = 3;

// <v>_meta.txt: special ids, add flags, the EOG set, every token's attributes.
inline void check_meta(const Tokenizer& tok, const std::string& v) {
  std::map<int32_t, uint32_t> attrs;
  for (const auto& line : lines(golden_dir() / (v + "_meta.txt"))) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "n_vocab") {
      int32_t n;
      in >> n;
      EXPECT_EQ(tok.n_vocab(), n);
    } else if (key == "bos" || key == "eos" || key == "eot") {
      int32_t id;
      in >> id;
      const int32_t ours = key == "bos" ? tok.bos() : key == "eos" ? tok.eos() : tok.eot();
      EXPECT_EQ(ours, id) << key;
    } else if (key == "add_bos" || key == "add_eos") {
      int flag;
      in >> flag;
      EXPECT_EQ(key == "add_bos" ? tok.spec().add_bos : tok.spec().add_eos, flag != 0) << key;
    } else if (key == "eog") {
      std::vector<int32_t> ids;
      int32_t id;
      while (in >> id) ids.push_back(id);
      EXPECT_EQ(join_ids(tok.eog_ids()), join_ids(ids)) << "end-of-generation ids";
    } else if (key == "attr") {
      int32_t id;
      uint32_t a;
      in >> id >> a;
      attrs[id] = a;
    }
  }
  int bad = 0;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const uint32_t want = attrs.count(id) ? attrs[id] : uint32_t(kAttrNormal);
    if (tok.token_attr(id) != want && ++bad <= kMaxReported)
      ADD_FAILURE() << "token " << id << " '" << show(tok.token_text(id)) << "': attr " << tok.token_attr(id)
                    << ", llama.cpp " << want;
  }
  EXPECT_EQ(bad, 0) << "tokens with other attributes than llama.cpp's";
}

// <v>_hard.txt: ids and the three detokenizations of each hard case.
inline void check_hard(const Tokenizer& tok, const std::string& v) {
  std::map<std::string, std::string> text;
  for (const auto& [name, t] : hard_cases()) text[name] = t;
  int bad = 0, rows = 0;
  for (const auto& row : table(golden_dir() / (v + "_hard.txt"))) {
    ASSERT_GE(row.size(), 3u);
    ASSERT_TRUE(text.count(row[0])) << "case " << row[0] << " is not in hard_set.txt";
    const std::string& input = text[row[0]];
    const bool special = row[1] == "11";
    ++rows;
    if (row[2] == "EXCEPTION") {
      // llama.cpp throws out of llama_tokenize here (code points above U+10FFFF
      // in a BPE vocab); we must not, and read each such byte as U+FFFD.
      EXPECT_NO_THROW(tok.encode(input, special, special)) << row[0];
      continue;
    }
    const auto ids = tok.encode(input, special, special);
    const auto want = parse_ids(row[2]);
    if (ids != want) {
      if (++bad <= kMaxReported)
        ADD_FAILURE() << v << " case '" << row[0] << "' mode " << row[1] << "\n  text: " << show(input)
                      << "\n  ours:      " << join_ids(ids) << "\n  llama.cpp: " << join_ids(want);
      continue;
    }
    ASSERT_EQ(row.size(), 6u);
    const std::string d00 = row[3] == "=" ? input : unhex(row[3]);
    const std::string d01 = row[4] == "=" ? d00 : unhex(row[4]);
    const std::string d10 = row[5] == "=" ? d00 : unhex(row[5]);
    EXPECT_EQ(show(tok.decode(ids, false, false), 100000), show(d00, 100000)) << v << " decode of " << row[0] << " " << row[1];
    EXPECT_EQ(show(tok.decode(ids, true, false), 100000), show(d01, 100000)) << v << " decode(render) of " << row[0] << " " << row[1];
    EXPECT_EQ(show(tok.decode(ids, false, true), 100000), show(d10, 100000)) << v << " decode(remove) of " << row[0] << " " << row[1];
  }
  EXPECT_GT(rows, 100);
  EXPECT_EQ(bad, 0) << v << ": hard cases whose ids differ from llama.cpp's";
}

// <v>_pieces.txt: token_to_piece with and without rendering specials.
inline void check_pieces(const Tokenizer& tok, const std::string& v) {
  int bad = 0, rows = 0;
  for (const auto& row : table(golden_dir() / (v + "_pieces.txt"))) {
    const int32_t id = std::atoi(row[0].c_str());
    const std::string plain = unhex(row[1]), rendered = unhex(row.size() > 2 ? row[2] : "");
    ++rows;
    if ((tok.token_to_piece(id, false) != plain || tok.token_to_piece(id, true) != rendered) && ++bad <= kMaxReported)
      ADD_FAILURE() << v << " token " << id << " '" << show(tok.token_text(id)) << "': pieces '"
                    << show(tok.token_to_piece(id, false)) << "' / '" << show(tok.token_to_piece(id, true))
                    << "', llama.cpp '" << show(plain) << "' / '" << show(rendered) << "'";
  }
  EXPECT_GT(rows, 10);
  EXPECT_EQ(bad, 0) << v << ": pieces that differ from llama.cpp's";
}

// A wikitext .ids fixture: line i holds the ids of the i-th line of
// wiki.test.raw (split after each '\n', CRLF kept), tokenized alone without
// specials. With check_roundtrip each line must also decode back to itself.
inline void check_wikitext_lines(const Tokenizer& tok, const std::string& ids_file, bool check_roundtrip = true) {
  const auto raw = read_binary(wikitext_path());
  const auto want = lines(golden_dir() / ids_file);
  size_t b = 0;
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_LT(b, raw.size()) << "wiki.test.raw has fewer lines than " << ids_file;
    size_t e = raw.find('\n', b);
    e = e == std::string::npos ? raw.size() : e + 1;
    const std::string line = raw.substr(b, e - b);
    b = e;
    const auto ids = tok.encode(line, false, false);
    const auto expect = parse_ids(want[i]);
    if (ids != expect) {
      if (++bad <= kMaxReported)
        ADD_FAILURE() << ids_file << " line " << (i + 1) << "\n  text: " << show(line, 400)
                      << "\n  ours:      " << join_ids(ids) << "\n  llama.cpp: " << join_ids(expect);
      continue;
    }
    if (check_roundtrip && tok.decode(ids) != line && ++bad <= kMaxReported)
      ADD_FAILURE() << ids_file << " line " << (i + 1) << " does not decode back: " << show(tok.decode(ids), 400);
  }
  EXPECT_EQ(bad, 0) << ids_file << ": lines that differ from llama.cpp";
}

// "wikitext_whole N HASH" in <v>_meta.txt: the whole file as one text.
inline void check_wikitext_whole(const Tokenizer& tok, const std::string& v) {
  std::string want;
  for (const auto& line : lines(golden_dir() / (v + "_meta.txt")))
    if (line.rfind("wikitext_whole ", 0) == 0) want = line.substr(15);
  ASSERT_FALSE(want.empty()) << "no wikitext_whole line in " << v << "_meta.txt";
  const auto ids = tok.encode(read_binary(wikitext_path()), false, false);
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the ids as little-endian int32
  for (int32_t t : ids)
    for (int k = 0; k < 4; ++k) {
      h ^= (uint32_t(t) >> (8 * k)) & 0xFF;
      h *= 1099511628211ull;
    }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  EXPECT_EQ(std::to_string(ids.size()) + " " + hex, want) << "token count and hash of the whole wiki.test.raw";
}

}  // namespace kestrel::tokfix
