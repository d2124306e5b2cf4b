#pragma once
#include <CLI/CLI.hpp>

namespace kestrel::cli {

// Each adds its subcommand to the app; the subcommand's callback does the work.
void add_run_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_ab_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_longeval_command(CLI::App& app);
void add_calibrate_command(CLI::App& app);
void add_dump_features_command(CLI::App& app);
void add_tune_command(CLI::App& app);

}  // namespace kestrel::cli
