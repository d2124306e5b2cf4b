// kestrel chat: an interactive conversation using the model's chat template.
// Each turn re-renders the whole conversation; the session reuses the cached
// prefix, so only the new turn is evaluated.
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"

namespace kestrel::cli {

void add_chat_command(CLI::App& app) {
  struct Opts {
    ModelFlags model;
    SamplingParams sampling;
    int n_predict = 512;
    std::string chat_template;
    std::string system;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("chat", "interactive chat (end with an empty line at EOF, or /exit)");
  add_model_flags(*cmd, o->model);
  add_guard_flags(*cmd, o->model.guard);
  add_sampling_flags(*cmd, o->sampling, o->model);
  add_speculative_flags(*cmd, o->model);
  cmd->add_option("-n,--n-predict", o->n_predict, "maximum tokens per reply");
  cmd->add_option("--chat-template", o->chat_template, "built-in chat template to use instead of the model's");
  cmd->add_option("--sys,--system-prompt", o->system, "system message");
  cmd->callback([o] {
    auto model = load_model_verbose(o->model);
    apply_guard(*model, o->model);
    const Tokenizer& tok = model->tokenizer();
    const std::string tmpl = !o->chat_template.empty() ? o->chat_template : tok.spec().chat_template;
    Session session(*model, session_options(o->model));
    std::vector<ChatMessage> msgs;
    if (!o->system.empty()) msgs.push_back({"system", o->system});
    apply_chat_template(tmpl, {{"user", "x"}}, true);  // fail early on an unsupported template
    std::string line;
    for (;;) {
      std::cout << "> " << std::flush;
      if (!std::getline(std::cin, line) || line == "/exit") break;
      if (line.empty()) continue;
      msgs.push_back({"user", line});
      const auto ids = tok.encode(apply_chat_template(tmpl, msgs, true), true, true);
      GenerateOptions g;
      g.max_tokens = o->n_predict;
      g.sampling = o->sampling;
      try {
        auto r = generate(session, ids, g, [](const std::string& piece) {
          std::cout << piece << std::flush;
          return true;
        });
        std::cout << "\n";
        if (const std::string spec = speculative_summary(r); !spec.empty()) std::cerr << "[" << spec << "]\n";
        msgs.push_back({"assistant", r.text});
      } catch (const Error& e) {
        std::cerr << "error: " << e.what() << "\n";
        msgs.pop_back();
      }
    }
  });
}

}  // namespace kestrel::cli
