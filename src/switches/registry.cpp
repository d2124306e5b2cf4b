#include "switches/registry.h"

#include <cctype>

#include "core/error.h"
#include "platform/cpu.h"

namespace kestrel {
namespace {

std::string isa_unsupported(const std::string& v) {
  const Isa isa = parse_isa(v);
  return isa_supported(isa) ? "" : "this CPU lacks " + v;
}

std::string always_supported(const std::string&) { return ""; }

std::string matmul_unsupported(const std::string& v) {
  const CpuFeatures& f = cpu_features();
  if (v != "vecdot" && !isa_supported(Isa::Avx512)) return "the panel kernels need AVX-512";
  if (v == "amx" && !(f.amx_tile && f.amx_int8)) return "this CPU lacks AMX-INT8";
  return "";
}

std::vector<SwitchSpec> make_specs() {
  return {
      {"isa", "kernel instruction set for every kernel (scalar twins, AVX2, AVX-512 + VNNI)",
       {"scalar", "avx2", "avx512"}, "", isa_unsupported},
      {"kv", "KV cache storage type (llama.cpp's default is f16)", {"f16", "f32"}, "f16", always_supported},
      {"threads", "worker threads of the forward pass", {}, "", always_supported},
      {"matmul",
       "weight matmul kernels: 16-row panels with VNNI for every batch size, row-by-row vec_dot on the "
       "GGUF rows (session 1's decode path), or panels with AMX-INT8 tiles for whole 16-token tiles",
       {"panels", "vecdot", "amx"}, "panels", matmul_unsupported},
      {"sampling", "token sampler: the sort-based chain, or sorting-free pivot rejection sampling (same distribution)",
       {"sort", "sortfree"}, "sort", always_supported},
  };
}

}  // namespace

const std::vector<SwitchSpec>& switch_specs() {
  static const std::vector<SwitchSpec> specs = make_specs();
  return specs;
}

const SwitchSpec& find_switch(std::string_view name) {
  for (const auto& s : switch_specs())
    if (s.name == name) return s;
  std::string names;
  for (const auto& s : switch_specs()) names += (names.empty() ? "" : ", ") + s.name;
  fail("unknown switch '", name, "' (known: ", names, ")");
}

SwitchSetting parse_switch(std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size())
    fail("switch '", text, "' must be written name=value");
  SwitchSetting s{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
  const SwitchSpec& spec = find_switch(s.name);
  if (spec.values.empty()) {
    bool digits = !s.value.empty() && s.value.size() < 6;
    for (char c : s.value) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (!digits || std::stoi(s.value) <= 0) fail("switch ", s.name, " takes a positive integer, not '", s.value, "'");
  } else {
    bool known = false;
    for (const auto& v : spec.values) known = known || v == s.value;
    if (!known) {
      std::string vals;
      for (const auto& v : spec.values) vals += (vals.empty() ? "" : ", ") + v;
      fail("switch ", s.name, " has no value '", s.value, "' (values: ", vals, ")");
    }
  }
  return s;
}

std::vector<SwitchSetting> parse_switch_list(std::string_view text) {
  std::vector<SwitchSetting> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find_first_of(",;", start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) out.push_back(parse_switch(text.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

}  // namespace kestrel
