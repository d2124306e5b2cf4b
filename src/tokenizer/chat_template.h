#pragma once
// Chat prompts rendered as llama.cpp's llama_chat_apply_template renders them: it
// is not a Jinja engine; it recognises the template family from tell-tale strings
// in the GGUF's template text (or takes a built-in name) and writes that family's
// fixed format.
#include <string>
#include <string_view>
#include <vector>

namespace kestrel {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

// template_text_or_name: the GGUF's tokenizer.chat_template, or a built-in name
// such as "chatml" or "llama3". An empty string means "chatml" (llama.cpp's
// fallback when a model has no template). add_generation_prompt opens the
// assistant's turn where the family has such a prefix.
// Throws Error when the family is not recognised, or recognised but not one we
// render; the message lists the built-in names.
std::string apply_chat_template(std::string_view template_text_or_name, const std::vector<ChatMessage>& msgs,
                                bool add_generation_prompt);

// The family a template text (or name) is recognised as, e.g. "chatml"; "" when
// none (including families llama.cpp knows but we do not render).
std::string detect_chat_template(std::string_view template_text_or_name);

// The built-in names we render, in a stable order.
std::vector<std::string> builtin_chat_templates();

}  // namespace kestrel
