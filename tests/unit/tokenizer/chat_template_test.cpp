// Chat templates against llama_chat_apply_template's output for every template
// text / built-in name in chat_inputs.txt and every message list there.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"
#include "fixtures.h"

namespace kestrel::tokfix {
namespace {

struct ChatInputs {
  std::vector<std::pair<std::string, std::string>> templates;
  std::map<std::string, std::vector<ChatMessage>> lists;
};

ChatInputs read_inputs() {
  ChatInputs in;
  for (const auto& row : table(golden_dir() / "chat_inputs.txt")) {
    if (row[0] == "T") in.templates.emplace_back(row[1], unescape(row[2]));
    else in.lists[row[1]].push_back({unescape(row[2]), unescape(row[3])});
  }
  return in;
}

// Families llama.cpp renders that we deliberately do not: we must refuse them.
const std::set<std::string> kUnsupported = {"llama4_text", "name_deepseek3", "name_llama4"};

TEST(ChatTemplateGolden, MatchesLlamaCpp) {
  const ChatInputs in = read_inputs();
  std::map<std::string, std::string> tmpl(in.templates.begin(), in.templates.end());
  int rows = 0;
  for (const auto& row : table(golden_dir() / "chat_templates.txt")) {
    ASSERT_EQ(row.size(), 4u);
    ASSERT_TRUE(tmpl.count(row[0]) && in.lists.count(row[1])) << row[0] << " " << row[1];
    const std::string& t = tmpl[row[0]];
    const auto& msgs = in.lists.at(row[1]);
    const bool add_ass = row[2] == "1";
    ++rows;
    SCOPED_TRACE(row[0] + " / " + row[1] + " / add_ass=" + row[2]);
    if (row[3] == "ERR" || kUnsupported.count(row[0])) {
      EXPECT_THROW(apply_chat_template(t, msgs, add_ass), Error);
      continue;
    }
    EXPECT_EQ(show(apply_chat_template(t, msgs, add_ass), 100000), show(unhex(row[3]), 100000));
  }
  EXPECT_GT(rows, 200);
}

TEST(ChatTemplate, DetectsFamiliesOfRealTemplates) {
  const ChatInputs in = read_inputs();
  std::map<std::string, std::string> tmpl(in.templates.begin(), in.templates.end());
  EXPECT_EQ(detect_chat_template(tmpl["smollm2_gguf"]), "chatml");
  EXPECT_EQ(detect_chat_template(tmpl["qwen25_gguf"]), "chatml");
  EXPECT_EQ(detect_chat_template(tmpl["llama3_text"]), "llama3");
  EXPECT_EQ(detect_chat_template(tmpl["mistral_v7_text"]), "mistral-v7");
  EXPECT_EQ(detect_chat_template(tmpl["zephyr_official_text"]), "glmedge");  // llama.cpp's order decides
  EXPECT_EQ(detect_chat_template(tmpl["unknown_text"]), "");
  EXPECT_EQ(detect_chat_template(""), "chatml");
}

TEST(ChatTemplate, UnknownTemplateErrorListsBuiltins) {
  try {
    apply_chat_template("{{ nothing we know }}", {{"user", "x"}}, true);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("not recognised"), std::string::npos) << msg;
    for (const auto& name : builtin_chat_templates()) EXPECT_NE(msg.find(name), std::string::npos) << name;
  }
  EXPECT_THROW(apply_chat_template("llama4", {{"user", "x"}}, true), Error);
}

TEST(ChatTemplate, BuiltinsCoverTheMainFamilies) {
  const auto names = builtin_chat_templates();
  for (const char* n : {"chatml", "llama3", "llama2", "mistral-v1", "mistral-v3", "mistral-v7", "zephyr", "gemma"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  for (const auto& n : names) EXPECT_NO_THROW(apply_chat_template(n, {{"user", "x"}}, true)) << n;
}

}  // namespace
}  // namespace kestrel::tokfix
