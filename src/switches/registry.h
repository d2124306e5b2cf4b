#pragma once
// The registry of switchable techniques. Each switch has a name, the values it
// takes, the value of the exact baseline, what it changes, and whether this CPU
// can run a given value. The runtime maps a setting onto its options
// (runtime/switch_apply.h); `kestrel ab` runs the baseline and each setting.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel {

struct SwitchSpec {
  std::string name;                 // "isa", "kv", "threads", ...
  std::string changes;              // one line: what the switch changes
  std::vector<std::string> values;  // allowed values; empty = a positive integer
  std::string baseline;             // the exact baseline's value ("" = the machine's default)
  // Why this CPU cannot run `value`, or "" when it can.
  std::function<std::string(const std::string& value)> unsupported;
};

struct SwitchSetting {
  std::string name;
  std::string value;
  std::string label() const { return name + "=" + value; }
};

const std::vector<SwitchSpec>& switch_specs();
// Throws kestrel::Error naming the switch and listing the known ones.
const SwitchSpec& find_switch(std::string_view name);
// "name=value": checks the name and the value; throws kestrel::Error otherwise.
SwitchSetting parse_switch(std::string_view text);
// "a=x,b=y" (or "a=x;b=y"): several settings.
std::vector<SwitchSetting> parse_switch_list(std::string_view text);

}  // namespace kestrel
