#pragma once
// The registry of switchable techniques. Each switch has a name, the values it
// takes, the value of the exact baseline, what it changes, whether this CPU can
// run a given value, and the slot of the engine configuration it installs into
// (switches/engine_config.h). Hosts never test switch names: they build their
// engine core from an EngineConfig, and report it back with engine_settings().
// Adding a switch: docs/architecture.md.
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "switches/engine_config.h"

namespace kestrel {

// What a value of a switch changes in a host's output, against the default
// configuration: the registry-walking test (tests/unit/runtime/
// switch_hosts_test.cpp) checks every host shows exactly that.
enum class SwitchEffect {
  Logits,  // other kernels or stores: logits differ (within the technique's accuracy)
  Draws,   // same logits, other sampled tokens for one seed (another sampler)
  Speed,   // same logits and tokens (threads, kernels bit-identical by design)
  // Other kernels of the same arithmetic (isa): logits within float rounding,
  // and equal where two levels agree bit for bit (integer dot products, twins'
  // orders), so no difference is required.
  Kernels,
  // KV eviction after the prompt (kvcompress, kv_budget): the prompt's own
  // logits are unchanged (they come before the eviction), the host then holds
  // fewer KV blocks when the prompt is longer than the protected window, and
  // decode attends over fewer rows (later logits move); a host that cannot
  // evict (perplexity) refuses the value.
  Evicts,
  // Decode steps only (teal): a prompt's logits are unchanged, the logits of
  // decode steps move (within the technique's accuracy); the perplexity host
  // scores every token as if decoded, so its numbers move.
  Thins,
};

struct SwitchSpec {
  std::string name;                 // "isa", "kv", "threads", ...
  std::string changes;              // one line: what the switch changes
  std::vector<std::string> values;  // allowed values; empty = a positive integer (or the baseline)
  std::string baseline;             // the exact baseline's value ("" = the machine's default)
  // Why this CPU cannot run `value`, or "" when it can.
  std::function<std::string(const std::string& value)> unsupported;
  // Writes `value` (already checked) into the switch's slot.
  std::function<void(EngineConfig& config, const std::string& value)> install;
  // The slot's value, spelled as a value of this switch.
  std::function<std::string(const EngineConfig& config)> current;
  // What `value` changes against the default configuration.
  std::function<SwitchEffect(const std::string& value)> effect;
  // For a Logits effect: how far the logits may move, relative to their
  // largest magnitude, on teacher-forced tokens (the registry-walking test's
  // bound). Empty: kLogitsBound, float rounding or F16 storage.
  std::function<double(const std::string& value)> logits_bound = {};
  // True where a Logits effect is float rounding alone (the same arithmetic in
  // another order: isa, matmul), not an approximation: the accuracy guard
  // (runtime/accuracy_guard.h) does not measure such a value. Empty: false.
  std::function<bool(const std::string& value)> rounding_only = {};
};

// The bound of every exact-up-to-rounding switch: 2 % of the largest logit.
constexpr double kLogitsBound = 2e-2;
// A switch's bound for `value` (kLogitsBound unless the switch declares one).
double logits_bound(const SwitchSpec& spec, const std::string& value);

struct SwitchSetting {
  std::string name;
  std::string value;
  std::string label() const { return name + "=" + value; }
  bool operator==(const SwitchSetting&) const = default;
};

// "kv=q4_0+attn=sage" (in the given order).
std::string settings_label(std::span<const SwitchSetting> s);

const std::vector<SwitchSpec>& switch_specs();
// Throws kestrel::Error naming the switch and listing the known ones.
const SwitchSpec& find_switch(std::string_view name);
// "name=value": checks the name and the value; throws kestrel::Error otherwise.
SwitchSetting parse_switch(std::string_view text);
// "a=x,b=y" (or "a=x;b=y"): several settings.
std::vector<SwitchSetting> parse_switch_list(std::string_view text);

// Installs a setting into its slot. Throws kestrel::Error when this CPU cannot
// run it (with the reason).
void apply_switch(EngineConfig& config, const SwitchSetting& setting);
// Whether two settings write a slot in common (kv writes kv_k and kv_v): they
// cannot go together, and one given later replaces the other.
bool share_a_slot(const SwitchSetting& a, const SwitchSetting& b);
// In order; a switch given twice with different values is an error (two
// spellings of one flag, e.g. `-t 2 --switch threads=1`, must not race).
void apply_switches(EngineConfig& config, const std::vector<SwitchSetting>& settings);
// Throws kestrel::Error when the slots do not fit together (a KV type and an
// attention algorithm without kernels for the pair), naming what would work.
void check_engine_config(const EngineConfig& config);

// The `kv` switch's value: the KV element type when K and V share it, else
// "K/V" (e.g. "q8_0/f16"; set K and V apart with kv_k and kv_v).
std::string kv_value(const EngineConfig& config);

// Every switch's value in `config`, in registry order: what a host reports.
std::vector<SwitchSetting> engine_settings(const EngineConfig& config);
// "isa=avx512 kv=f16 ...": engine_settings() on one line.
std::string engine_settings_text(const EngineConfig& config);

}  // namespace kestrel
