// kestrel info MODEL: metadata and tensors of a GGUF file.
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "gguf/gguf.h"

namespace kestrel::cli {
namespace {

std::string render(const gguf::Value& v, bool full) {
  using gguf::ValueType;
  switch (v.type) {
    case ValueType::STRING: {
      const std::string& s = v.as_string();
      if (!full && s.size() > 80) return "\"" + s.substr(0, 77) + "...\" (" + std::to_string(s.size()) + " bytes)";
      return "\"" + s + "\"";
    }
    case ValueType::ARRAY: {
      const auto& a = v.as_array();
      std::string out = "[" + std::string(gguf::value_type_name(a.elem_type)) + " x " + std::to_string(a.items.size()) + "]";
      if (!a.items.empty()) {
        out += " ";
        for (size_t i = 0; i < a.items.size() && i < (full ? a.items.size() : 5); ++i)
          out += (i ? ", " : "") + render(a.items[i], false);
        if (!full && a.items.size() > 5) out += ", ...";
      }
      return out;
    }
    case ValueType::BOOL: return v.as_bool() ? "true" : "false";
    case ValueType::F32:
    case ValueType::F64: return std::to_string(v.as_f64());
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64: return std::to_string(v.as_i64());
    default: return std::to_string(v.as_u64());
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto full = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("info", "print a GGUF file's metadata and tensors");
  cmd->add_option("model", *path, "GGUF file")->required();
  cmd->add_flag("--full", *full, "print long strings and arrays whole");
  cmd->callback([path, full] {
    const gguf::File f = gguf::File::open(*path);
    std::cout << "file: " << *path << "\nGGUF version " << f.version() << ", " << f.file_size() << " bytes, alignment "
              << f.alignment() << "\n\nmetadata (" << f.metadata().size() << " keys):\n";
    for (const auto& [key, value] : f.metadata())
      std::cout << "  " << key << " (" << gguf::value_type_name(value.type) << ") = " << render(value, *full) << "\n";
    std::cout << "\ntensors (" << f.tensors().size() << "):\n";
    size_t total = 0;
    for (const auto& t : f.tensors()) {
      std::cout << "  " << t.name << "  " << dtype_name(t.type) << "  [";
      for (size_t i = 0; i < t.ne.size(); ++i) std::cout << (i ? ", " : "") << t.ne[i];
      std::cout << "]  " << t.nbytes << " bytes\n";
      total += t.nbytes;
    }
    std::cout << "total tensor bytes: " << total << "\n";
  });
}

}  // namespace kestrel::cli
