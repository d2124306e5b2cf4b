// kestrel quantize IN.gguf OUT.gguf TYPE: re-quantize a model, like llama-quantize.
#include <iostream>

#include "cli/commands.h"
#include "model/quantize.h"

namespace kestrel::cli {

void add_quantize_command(CLI::App& app) {
  struct Opts {
    std::string in, out, type;
    bool pure = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("quantize", "write a copy of a GGUF model in another tensor format");
  cmd->add_option("input", o->in, "source GGUF")->required();
  cmd->add_option("output", o->out, "destination GGUF")->required();
  cmd->add_option("type", o->type, "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS")->required();
  cmd->add_flag("--pure", o->pure, "every matrix in TYPE (no higher-precision output layer)");
  cmd->callback([o] {
    QuantizeOptions q;
    q.type = find_quant_target(o->type).type;
    q.pure = o->pure;
    q.progress = [](size_t i, size_t n, const std::string& name, DType t) {
      std::cerr << "\r[" << (i + 1) << "/" << n << "] " << name << " -> " << dtype_name(t) << "            "
                << std::flush;
    };
    quantize_model(o->in, o->out, q);
    std::cerr << "\nwrote " << o->out << "\n";
  });
}

}  // namespace kestrel::cli
