#include "switches/registry.h"

#include <cctype>

#include "core/error.h"
#include "platform/cpu.h"
#include "sampling/sampler.h"

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

std::string kv_unsupported(const std::string& v) {
  const DType t = *dtype_from_name(v);
  return kernels::has_attention_kernels(t, kernels::AttentionAlgo::Exact) ? "" : "no attention kernels read " + v;
}

std::string matmul_value(const MatmulOptions& m) {
  if (!m.allow_panels) return "vecdot";
  return m.amx == AmxUse::Always ? "amx" : "panels";
}

std::vector<SwitchSpec> make_specs() {
  return {
      {"isa", "kernel instruction set for every kernel (scalar twins, AVX2, AVX-512 + VNNI)",
       {"scalar", "avx2", "avx512"}, "", isa_unsupported,
       [](EngineConfig& c, const std::string& v) { c.isa = parse_isa(v); },
       [](const EngineConfig& c) { return std::string(isa_name(c.isa)); },
       [](const std::string&) { return SwitchEffect::Logits; }},
      {"kv", "KV cache storage type (llama.cpp's default is f16)", {"f16", "f32"}, "f16", kv_unsupported,
       [](EngineConfig& c, const std::string& v) { c.kv_type = *dtype_from_name(v); },
       [](const EngineConfig& c) { return std::string(dtype_name(c.kv_type)); },
       [](const std::string&) { return SwitchEffect::Logits; }},
      {"threads", "worker threads of the forward pass", {}, "", always_supported,
       [](EngineConfig& c, const std::string& v) { c.n_threads = std::stoi(v); },
       [](const EngineConfig& c) { return std::to_string(c.n_threads); },
       // Work is split by rows and summed in a fixed order: logits do not
       // depend on the thread count.
       [](const std::string&) { return SwitchEffect::Speed; }},
      {"matmul",
       "weight matmul kernels: 16-row panels with VNNI for every batch size, row-by-row vec_dot on the "
       "GGUF rows (session 1's decode path), or panels with AMX-INT8 tiles for whole 16-token tiles",
       {"panels", "vecdot", "amx"}, "panels", matmul_unsupported,
       [](EngineConfig& c, const std::string& v) {
         c.matmul.allow_panels = v != "vecdot";
         c.matmul.amx = v == "amx" ? AmxUse::Always : AmxUse::Never;
       },
       [](const EngineConfig& c) { return matmul_value(c.matmul); },
       // AMX tiles compute the panels' integer products exactly, in the same order.
       [](const std::string& v) { return v == "amx" ? SwitchEffect::Speed : SwitchEffect::Logits; }},
      {"sampling",
       "token sampler: the sort-based chain, or sorting-free pivot rejection sampling (same distribution); "
       "auto = the faster, sortfree",
       {"sort", "sortfree", "auto"}, "sort", always_supported,
       [](EngineConfig& c, const std::string& v) { c.sampler = parse_sampler_kind(v); },
       [](const EngineConfig& c) { return std::string(sampler_kind_name(resolve_sampler_kind(c.sampler))); },
       [](const std::string&) { return SwitchEffect::Draws; }},
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

void apply_switch(EngineConfig& config, const SwitchSetting& setting) {
  const SwitchSpec& spec = find_switch(setting.name);
  // Re-parsed so that a setting built by hand is checked like a typed one.
  const SwitchSetting s = parse_switch(setting.label());
  if (const std::string why = spec.unsupported(s.value); !why.empty())
    fail("switch ", s.label(), " cannot run here: ", why);
  spec.install(config, s.value);
}

void apply_switches(EngineConfig& config, const std::vector<SwitchSetting>& settings) {
  for (size_t i = 0; i < settings.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (settings[j].name == settings[i].name && settings[j].value != settings[i].value)
        fail("switch ", settings[i].name, " is set twice, to ", settings[j].value, " and to ", settings[i].value,
             " (a flag such as -t, --isa, --cache-type or --sampler sets the same switch as --switch)");
    apply_switch(config, settings[i]);
  }
}

void check_engine_config(const EngineConfig& config) {
  (void)kernels::attention_kernel_set(config.kv_type, config.attention, config.isa);
}

std::vector<SwitchSetting> engine_settings(const EngineConfig& config) {
  std::vector<SwitchSetting> out;
  for (const auto& spec : switch_specs()) out.push_back({spec.name, spec.current(config)});
  return out;
}

std::string engine_settings_text(const EngineConfig& config) {
  std::string out;
  for (const auto& s : engine_settings(config)) out += (out.empty() ? "" : " ") + s.label();
  return out;
}

std::string_view decode_policy_name(DecodePolicy policy) {
  switch (policy) {
    case DecodePolicy::Plain:
      return "plain";
  }
  return "?";
}

}  // namespace kestrel
