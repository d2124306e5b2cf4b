// kestrel run: complete a prompt and stream the text, like llama.cpp's completion tool.
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"

namespace kestrel::cli {

void add_run_command(CLI::App& app) {
  struct Opts {
    ModelFlags model;
    SamplingParams sampling;
    std::string prompt, file;
    int n_predict = 256;
    bool chat = false;
    bool no_display_prompt = false;
    std::string chat_template;
    std::string system;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("run", "complete a prompt and stream the generated text");
  add_model_flags(*cmd, o->model);
  add_guard_flags(*cmd, o->model.guard);
  add_sampling_flags(*cmd, o->sampling, o->model);
  add_speculative_flags(*cmd, o->model);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text");
  cmd->add_option("-f,--file", o->file, "read the prompt from a file");
  cmd->add_option("-n,--n-predict", o->n_predict, "tokens to generate (-1 = until end of text)");
  cmd->add_flag("--chat", o->chat, "wrap the prompt as a user message in the model's chat template");
  cmd->add_option("--chat-template", o->chat_template, "built-in chat template to use instead of the model's");
  cmd->add_option("--sys,--system-prompt", o->system, "system message (with --chat)");
  cmd->add_flag("--no-display-prompt", o->no_display_prompt, "do not echo the prompt");
  cmd->callback([o] {
    std::string prompt = o->prompt;
    if (!o->file.empty()) prompt = read_file(o->file);
    if (prompt.empty()) fail("run: give a prompt with -p or -f");
    auto model = load_model_verbose(o->model);
    apply_guard(*model, o->model);
    const Tokenizer& tok = model->tokenizer();
    std::vector<int32_t> ids;
    if (o->chat) {
      std::vector<ChatMessage> msgs;
      if (!o->system.empty()) msgs.push_back({"system", o->system});
      msgs.push_back({"user", prompt});
      const std::string tmpl = !o->chat_template.empty() ? o->chat_template : tok.spec().chat_template;
      prompt = apply_chat_template(tmpl, msgs, true);
      ids = tok.encode(prompt, true, true);
    } else {
      // Special tokens written in the prompt are parsed, as llama.cpp's tools do
      // (a chat-formatted prompt given as text tokenizes as --chat would).
      ids = tok.encode(prompt, true, true);
    }
    Session session(*model, session_options(o->model));
    if (static_cast<int64_t>(ids.size()) > session.n_ctx())
      fail("context overflow: the prompt has ", ids.size(), " tokens, the context holds ", session.n_ctx(),
           " (raise -c)");
    GenerateOptions g;
    g.max_tokens = o->n_predict;
    g.sampling = o->sampling;
    if (!o->no_display_prompt) std::cout << prompt << std::flush;
    auto r = generate(session, ids, g, [](const std::string& piece) {
      std::cout << piece << std::flush;
      return true;
    });
    std::cout << std::endl;
    const double pp = r.prompt_seconds > 0 ? r.prompt_tokens / r.prompt_seconds : 0.0;
    const double tg = r.generate_seconds > 0 ? r.tokens.size() / r.generate_seconds : 0.0;
    std::cerr << "kestrel: prompt " << r.prompt_tokens << " tokens at " << pp << " tok/s, generated "
              << r.tokens.size() << " tokens at " << tg << " tok/s (" << r.finish_reason << ")\n";
    if (const std::string spec = speculative_summary(r); !spec.empty()) std::cerr << "kestrel: " << spec << "\n";
  });
}

}  // namespace kestrel::cli
