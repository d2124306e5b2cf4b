#pragma once
// Maps a switch setting (switches/registry.h) onto the options a session runs
// with. A research technique adds its registry entry and one case here.
#include <vector>

#include "runtime/session.h"
#include "switches/registry.h"

namespace kestrel {

// Throws kestrel::Error when this CPU cannot run the setting.
void apply_switch(SessionOptions& options, const SwitchSetting& setting);
void apply_switches(SessionOptions& options, const std::vector<SwitchSetting>& settings);
// Also takes the switches that change how tokens are drawn (sampling=...), which
// live in the generation options; the session-only form rejects those.
void apply_switch(SessionOptions& options, GenerateOptions& generate, const SwitchSetting& setting);
void apply_switches(SessionOptions& options, GenerateOptions& generate, const std::vector<SwitchSetting>& settings);

}  // namespace kestrel
