#include "runtime/switch_apply.h"

#include "core/error.h"

namespace kestrel {

void apply_switch(SessionOptions& o, const SwitchSetting& s) {
  const SwitchSpec& spec = find_switch(s.name);
  if (const std::string why = spec.unsupported(s.value); !why.empty())
    fail("switch ", s.label(), " cannot run here: ", why);
  if (s.name == "isa") {
    o.isa = parse_isa(s.value);
  } else if (s.name == "kv") {
    o.kv_type = s.value == "f32" ? KvType::F32 : KvType::F16;
  } else if (s.name == "matmul") {
    o.matmul.allow_panels = s.value != "vecdot";
    o.matmul.amx = s.value == "amx" ? AmxUse::Always : AmxUse::Never;
  } else if (s.name == "threads") {
    o.n_threads = std::stoi(s.value);
  } else if (s.name == "sampling") {
    fail("switch ", s.label(), " changes the generation options: apply it with apply_switch(session, generate, ...)");
  } else {
    fail("switch ", s.name, " is registered but the runtime does not apply it");
  }
}

void apply_switches(SessionOptions& o, const std::vector<SwitchSetting>& settings) {
  for (const auto& s : settings) apply_switch(o, s);
}

void apply_switch(SessionOptions& o, GenerateOptions& g, const SwitchSetting& s) {
  if (s.name == "sampling") {
    const SwitchSpec& spec = find_switch(s.name);
    if (const std::string why = spec.unsupported(s.value); !why.empty())
      fail("switch ", s.label(), " cannot run here: ", why);
    g.sampling.kind = parse_sampler_kind(s.value);
    return;
  }
  apply_switch(o, s);
}

void apply_switches(SessionOptions& o, GenerateOptions& g, const std::vector<SwitchSetting>& settings) {
  for (const auto& s : settings) apply_switch(o, g, s);
}

}  // namespace kestrel
