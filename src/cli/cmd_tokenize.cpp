// kestrel tokenize -m MODEL -p TEXT: token ids (and pieces), like llama-tokenize.
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace kestrel::cli {

void add_tokenize_command(CLI::App& app) {
  struct Opts {
    std::string model, prompt, file;
    bool ids_only = false, no_bos = false, no_parse_special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("tokenize", "print the token ids of a text");
  cmd->add_option("-m,--model", o->model, "GGUF model file (default model if absent)");
  cmd->add_option("-p,--prompt", o->prompt, "text to tokenize");
  cmd->add_option("-f,--file", o->file, "read the text from a file");
  cmd->add_flag("--ids", o->ids_only, "print only the ids, as a list");
  cmd->add_flag("--no-bos", o->no_bos, "do not add the BOS token");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "treat special-token text as plain text");
  cmd->callback([o] {
    // Only the vocabulary is needed: no weights are touched.
    const gguf::File f = gguf::File::open(o->model.empty() ? default_model_path() : o->model);
    const Tokenizer tok(vocab_spec_from_gguf(f));
    const std::string text = o->file.empty() ? o->prompt : read_file(o->file);
    const auto ids = tok.encode(text, !o->no_bos, !o->no_parse_special);
    if (o->ids_only) {
      std::cout << "[";
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? ", " : "") << ids[i];
      std::cout << "]\n";
      return;
    }
    for (int32_t id : ids) std::cout << id << " -> '" << tok.token_to_piece(id) << "'\n";
  });
}

}  // namespace kestrel::cli
