#include "tokenizer/chat_template.h"

#include <cctype>
#include <sstream>

#include "core/error.h"

namespace kestrel {

namespace {

// Families we render, by llama.cpp's built-in names.
constexpr std::string_view kSupported[] = {
    "chatml",     "llama2",      "llama2-sys", "llama2-sys-bos",    "llama2-sys-strip",
    "mistral-v1", "mistral-v3",  "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken",
    "phi3",       "phi4",        "falcon3",    "zephyr",            "monarch",
    "gemma",      "orion",       "openchat",   "vicuna",            "vicuna-orca",
    "deepseek",   "command-r",   "llama3",     "chatglm3",          "chatglm4",
    "glmedge",    "smolvlm",
};

// Built-in names llama.cpp also accepts that we do not render.
constexpr std::string_view kKnownUnsupported[] = {
    "deepseek2", "deepseek3", "deepseek-ocr", "minicpm", "exaone3", "exaone4", "exaone-moe",
    "rwkv-world", "granite", "granite-4.0", "granite-4.1", "gigachat", "megrez", "yandex",
    "bailing", "bailing-think", "bailing2", "llama4", "hunyuan-moe", "gpt-oss", "hunyuan-dense",
    "hunyuan-vl", "kimi-k2", "seed_oss", "grok-2", "pangu-embedded", "solar-open",
};

bool is_one_of(std::string_view s, const auto& list) {
  for (std::string_view x : list)
    if (x == s) return true;
  return false;
}

// ASCII isspace trim, as llama.cpp trims message content for some families.
std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// The family llama.cpp would pick for a template text. The order of the checks
// matters (a Phi-4 template also contains "<|im_start|>", etc.). Returns "" for
// text matching none of the families below; families after "chatglm3" in
// llama.cpp's order are never ones we render, so the search stops there.
std::string detect(std::string_view t) {
  if (is_one_of(t, kSupported) || is_one_of(t, kKnownUnsupported)) return std::string(t);
  auto has = [&](std::string_view s) { return t.find(s) != std::string_view::npos; };
  if (has("<|im_start|>")) {
    if (has("<|im_sep|>")) return "phi4";
    if (has("<end_of_utterance>")) return "smolvlm";
    return "chatml";
  }
  if (t.substr(0, 7) == "mistral" || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return "mistral-v7";
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return "mistral-v1";
      if (has("\"[INST]\"")) return "mistral-v3-tekken";
      return "mistral-v3";
    }
    if (has("content.strip()")) return "llama2-sys-strip";
    if (has("bos_token + '[INST]")) return "llama2-sys-bos";
    if (has("<<SYS>>")) return "llama2-sys";
    return "llama2";
  }
  if (has("<|assistant|>") && has("<|end|>")) return "phi3";
  if (has("[gMASK]<sop>")) return "chatglm4";
  if (has("<|assistant|>") && has("<|user|>")) {
    if (has("<|tool_declare|>")) return "exaone-moe";
    return has("</s>") ? "falcon3" : "glmedge";
  }
  if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return "glmedge";
  if (has("<|user|>") && has("<|endoftext|>")) return "zephyr";
  if (has("bos_token + message['role']")) return "monarch";
  if (has("<start_of_turn>")) return "gemma";
  if (has("'\\n\\nAssistant: ' + eos_token")) return "orion";
  if (has("GPT4 Correct ")) return "openchat";
  if (has("USER: ") && has("ASSISTANT: ")) return has("SYSTEM: ") ? "vicuna-orca" : "vicuna";
  if (has("### Instruction:") && has("<|EOT|>")) return "deepseek";
  if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return "command-r";
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return "llama3";
  if (has("[gMASK]sop")) return "chatglm3";
  return "";
}

void render_llama2(std::ostringstream& os, const std::string& fam, const std::vector<ChatMessage>& msgs) {
  const bool system_block = fam != "llama2";
  const bool bos_in_history = fam == "llama2-sys-bos";
  const bool strip = fam == "llama2-sys-strip";
  bool in_turn = true;  // the first "[INST]" is written up front (BOS comes from the tokenizer)
  os << "[INST] ";
  for (const auto& m : msgs) {
    const std::string content = strip ? trim(m.content) : m.content;
    if (!in_turn) {
      in_turn = true;
      os << (bos_in_history ? "<s>[INST] " : "[INST] ");
    }
    if (m.role == "system") {
      if (system_block) os << "<<SYS>>\n" << content << "\n<</SYS>>\n\n";
      else os << content << "\n";
    } else if (m.role == "user") {
      os << content << " [/INST]";
    } else {
      os << content << "</s>";
      in_turn = false;
    }
  }
}

void render_mistral(std::ostringstream& os, const std::string& fam, const std::vector<ChatMessage>& msgs) {
  if (fam == "mistral-v7" || fam == "mistral-v7-tekken") {
    const char* sp = fam == "mistral-v7" ? " " : "";
    for (const auto& m : msgs) {
      if (m.role == "system") os << "[SYSTEM_PROMPT]" << sp << m.content << "[/SYSTEM_PROMPT]";
      else if (m.role == "user") os << "[INST]" << sp << m.content << "[/INST]";
      else os << sp << m.content << "</s>";
    }
    return;
  }
  const std::string lead = fam == "mistral-v1" ? " " : "";
  const std::string trail = fam == "mistral-v3-tekken" ? "" : " ";
  const bool trim_reply = fam == "mistral-v3";
  bool in_turn = false;
  for (const auto& m : msgs) {
    if (!in_turn) {
      os << lead << "[INST]" << trail;
      in_turn = true;
    }
    if (m.role == "system") {
      os << m.content << "\n\n";
    } else if (m.role == "user") {
      os << m.content << lead << "[/INST]";
    } else {
      os << trail << (trim_reply ? trim(m.content) : m.content) << "</s>";
      in_turn = false;
    }
  }
}

std::string render(const std::string& fam, const std::vector<ChatMessage>& msgs, bool add_ass) {
  std::ostringstream os;
  if (fam == "chatml") {
    for (const auto& m : msgs) os << "<|im_start|>" << m.role << "\n" << m.content << "<|im_end|>\n";
    if (add_ass) os << "<|im_start|>assistant\n";
  } else if (fam.rfind("llama2", 0) == 0) {
    render_llama2(os, fam, msgs);
  } else if (fam.rfind("mistral", 0) == 0) {
    render_mistral(os, fam, msgs);
  } else if (fam == "phi3") {
    for (const auto& m : msgs) os << "<|" << m.role << "|>\n" << m.content << "<|end|>\n";
    if (add_ass) os << "<|assistant|>\n";
  } else if (fam == "phi4") {
    for (const auto& m : msgs) os << "<|im_start|>" << m.role << "<|im_sep|>" << m.content << "<|im_end|>";
    if (add_ass) os << "<|im_start|>assistant<|im_sep|>";
  } else if (fam == "falcon3") {
    for (const auto& m : msgs) os << "<|" << m.role << "|>\n" << m.content << "\n";
    if (add_ass) os << "<|assistant|>\n";
  } else if (fam == "zephyr") {
    for (const auto& m : msgs) os << "<|" << m.role << "|>\n" << m.content << "<|endoftext|>\n";
    if (add_ass) os << "<|assistant|>\n";
  } else if (fam == "monarch") {
    for (size_t i = 0; i < msgs.size(); ++i)
      os << (i == 0 ? "" : "<s>") << msgs[i].role << "\n" << msgs[i].content << "</s>\n";
    if (add_ass) os << "<s>assistant\n";
  } else if (fam == "gemma") {
    // No system role: its text is put in front of the next non-model turn.
    std::string system;
    for (const auto& m : msgs) {
      if (m.role == "system") {
        system += trim(m.content);
        continue;
      }
      const std::string role = m.role == "assistant" ? "model" : m.role;
      os << "<start_of_turn>" << role << "\n";
      if (!system.empty() && role != "model") {
        os << system << "\n\n";
        system.clear();
      }
      os << trim(m.content) << "<end_of_turn>\n";
    }
    if (add_ass) os << "<start_of_turn>model\n";
  } else if (fam == "orion") {
    std::string system;
    for (const auto& m : msgs) {
      if (m.role == "system") {
        system += m.content;
      } else if (m.role == "user") {
        os << "Human: ";
        if (!system.empty()) {
          os << system << "\n\n";
          system.clear();
        }
        os << m.content << "\n\nAssistant: </s>";
      } else {
        os << m.content << "</s>";
      }
    }
  } else if (fam == "openchat") {
    for (const auto& m : msgs) {
      if (m.role == "system") {
        os << m.content << "<|end_of_turn|>";
      } else {
        std::string role = m.role;
        if (!role.empty()) role[0] = char(std::toupper(static_cast<unsigned char>(role[0])));
        os << "GPT4 Correct " << role << ": " << m.content << "<|end_of_turn|>";
      }
    }
    if (add_ass) os << "GPT4 Correct Assistant:";
  } else if (fam == "vicuna" || fam == "vicuna-orca") {
    for (const auto& m : msgs) {
      if (m.role == "system") os << (fam == "vicuna-orca" ? "SYSTEM: " + m.content + "\n" : m.content + "\n\n");
      else if (m.role == "user") os << "USER: " << m.content << "\n";
      else if (m.role == "assistant") os << "ASSISTANT: " << m.content << "</s>\n";
    }
    if (add_ass) os << "ASSISTANT:";
  } else if (fam == "deepseek") {
    for (const auto& m : msgs) {
      if (m.role == "system") os << m.content;
      else if (m.role == "user") os << "### Instruction:\n" << m.content << "\n";
      else if (m.role == "assistant") os << "### Response:\n" << m.content << "\n<|EOT|>\n";
    }
    if (add_ass) os << "### Response:\n";
  } else if (fam == "command-r") {
    for (const auto& m : msgs) {
      const char* tag = m.role == "system" ? "<|SYSTEM_TOKEN|>"
                        : m.role == "user" ? "<|USER_TOKEN|>"
                        : m.role == "assistant" ? "<|CHATBOT_TOKEN|>"
                                                : nullptr;
      if (tag) os << "<|START_OF_TURN_TOKEN|>" << tag << trim(m.content) << "<|END_OF_TURN_TOKEN|>";
    }
    if (add_ass) os << "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>";
  } else if (fam == "llama3") {
    for (const auto& m : msgs)
      os << "<|start_header_id|>" << m.role << "<|end_header_id|>\n\n" << trim(m.content) << "<|eot_id|>";
    if (add_ass) os << "<|start_header_id|>assistant<|end_header_id|>\n\n";
  } else if (fam == "chatglm3") {
    os << "[gMASK]sop";
    for (const auto& m : msgs) os << "<|" << m.role << "|>\n " << m.content;
    if (add_ass) os << "<|assistant|>";
  } else if (fam == "chatglm4") {
    os << "[gMASK]<sop>";
    for (const auto& m : msgs) os << "<|" << m.role << "|>\n" << m.content;
    if (add_ass) os << "<|assistant|>\n";
  } else if (fam == "glmedge") {
    for (const auto& m : msgs) os << "<|" << m.role << "|>\n" << m.content;
    if (add_ass) os << "<|assistant|>";
  } else if (fam == "smolvlm") {
    os << "<|im_start|>";  // SmolVLM's BOS; the turns are not ChatML
    for (const auto& m : msgs) {
      if (m.role == "system") os << m.content << "\n\n";
      else if (m.role == "user") os << "User: " << m.content << "<end_of_utterance>\n";
      else os << "Assistant: " << m.content << "<end_of_utterance>\n";
    }
    if (add_ass) os << "Assistant:";
  }
  return os.str();
}

std::string supported_list() {
  std::ostringstream os;
  for (size_t i = 0; i < std::size(kSupported); ++i) os << (i ? ", " : "") << kSupported[i];
  return os.str();
}

}  // namespace

std::string detect_chat_template(std::string_view t) {
  if (t.empty()) return "chatml";
  std::string fam = detect(t);
  return is_one_of(fam, kSupported) ? fam : "";
}

std::string apply_chat_template(std::string_view t, const std::vector<ChatMessage>& msgs, bool add_ass) {
  const std::string fam = t.empty() ? "chatml" : detect(t);
  if (fam.empty()) {
    std::string head(t.substr(0, 60));
    fail("chat template not recognised (", t.size() > 60 ? head + "..." : head,
         "); use a built-in template: ", supported_list());
  }
  if (!is_one_of(fam, kSupported))
    fail("chat template family '", fam, "' is recognised but not supported; built-in templates: ",
         supported_list());
  return render(fam, msgs, add_ass);
}

std::vector<std::string> builtin_chat_templates() {
  return std::vector<std::string>(std::begin(kSupported), std::end(kSupported));
}

}  // namespace kestrel
