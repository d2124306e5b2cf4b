// kestrel: the command-line front end. Subcommands only parse flags and print;
// the engine does the work. Input errors end with a message and exit code 1.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"kestrel: LLM inference on the CPU for llama.cpp's GGUF models"};
  app.require_subcommand(1);
  kestrel::cli::add_run_command(app);
  kestrel::cli::add_chat_command(app);
  kestrel::cli::add_info_command(app);
  kestrel::cli::add_tokenize_command(app);
  kestrel::cli::add_quantize_command(app);
  kestrel::cli::add_ab_command(app);
  kestrel::cli::add_perplexity_command(app);
  kestrel::cli::add_bench_command(app);
  kestrel::cli::add_synth_command(app);
  kestrel::cli::add_serve_command(app);
  kestrel::cli::add_longeval_command(app);
  kestrel::cli::add_calibrate_command(app);
  kestrel::cli::add_dump_features_command(app);
  kestrel::cli::add_tune_command(app);
  try {
    // CLI11 wants the arguments after the program name, last first.
    std::vector<std::string> args = kestrel::cli::llama_cpp_spellings(argc - 1, argv + 1);
    std::reverse(args.begin(), args.end());
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kestrel::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
