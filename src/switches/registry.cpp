#include "switches/registry.h"

#include <cctype>
#include <sstream>
#include <tuple>
#include <utility>

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
  if (v != "vecdot" && !isa_supported(Isa::Avx2)) return "the panel kernels need AVX2 or AVX-512";
  if (v == "amx" && !(f.amx_tile && f.amx_int8 && isa_supported(Isa::Avx512))) return "this CPU lacks AMX-INT8";
  return "";
}

// A `kv` value: one type for K and V, or "K/V" for CQ keys and values of two
// CQ types (cq2/cq1: 2-bit keys, 1-bit values).
std::pair<DType, DType> kv_types_of(const std::string& v) {
  const size_t slash = v.find('/');
  if (slash == std::string::npos) return {*dtype_from_name(v), *dtype_from_name(v)};
  return {*dtype_from_name(v.substr(0, slash)), *dtype_from_name(v.substr(slash + 1))};
}

std::string kv_unsupported(const std::string& v) {
  const DType t = kv_types_of(v).first;
  // Any KV type has kernels with some algorithm; whether the pair with the
  // configured algorithm exists is check_engine_config's question.
  for (DType k : kernels::kv_types())
    if (k == t) return "";
  for (DType k : kernels::cq_kv_types())
    if (k == t) return "";
  return "no attention kernels read " + v;
}

// llama.cpp's types, then for `kv` ours (cq2, cq1: kv/cq_codebook.h, with a
// codebook file per type), which code both K and V: kv_k and kv_v do not take
// them, `kv` takes one type for both or two as K/V (cq2/cq1, cq1/cq2).
std::vector<std::string> kv_type_names(bool with_cq) {
  std::vector<std::string> out;
  for (DType t : kernels::kv_types()) out.emplace_back(dtype_name(t));
  if (with_cq) {
    for (DType t : kernels::cq_kv_types()) out.emplace_back(dtype_name(t));
    for (DType k : kernels::cq_kv_types())
      for (DType v : kernels::cq_kv_types())
        if (k != v) {
          std::string pair(dtype_name(k));
          pair.append("/").append(dtype_name(v));
          out.push_back(std::move(pair));
        }
  }
  return out;
}

// f16 is the baseline (bit-exact to llama.cpp); every other type changes the logits.
SwitchEffect kv_effect(const std::string& v) { return v == "f16" ? SwitchEffect::Speed : SwitchEffect::Logits; }

// f32, bf16 and q8_0 round K and V by at most 2^-9 of a value (bf16) or half a
// step of amax/127 per 32 values (q8_0): within the default bound. The 4- and
// 5-bit formats round by up to half a step of amax/8 (q4_0; amax/15 for q4_1,
// amax/16 and amax/31 for q5_*): 6.25 % of a block's largest element. K's
// error moves the scores and V's the outputs by that fraction each, so the
// logits may move by about 2 x 6.25 % of their size; measured on the tiny test
// model: q4_0 K and V 8.7 %, q4_0 V alone 8 %. 15 %: that, plus headroom; still
// far below a broken kernel (a wrong scale or a dropped block moves logits by
// their own size).
//
// CQ codes 4 (cq2) or 8 (cq1) channels in one of 256 centroids: rows beyond
// the F16 window come back with a relative error of 0.16-0.33 on SmolLM2
// (docs/benchmarks.md "CQ codebooks"), several times q4_0's. Measured on the
// tiny test model with its own codebooks: see switch_hosts_test.cpp. 0.5 still
// tells a wrong codebook or a misread code, which move logits by their size.
double kv_logits_bound(const std::string& v) {
  const DType t = kv_types_of(v).first;
  if (is_cq(t)) return 0.5;
  return traits(t).block_size > 1 && t != DType::Q8_0 ? 0.15 : kLogitsBound;
}

// The slots a setting writes: `kv` writes K and V, which kv_k and kv_v write one each.
std::vector<std::string_view> slots_of(const SwitchSetting& s) {
  if (s.name == "kv") return {"kv_k", "kv_v"};
  return {s.name};
}

std::vector<std::string> attention_values() {
  std::vector<std::string> out;
  for (kernels::AttentionAlgo a : kernels::attention_algos()) out.emplace_back(kernels::attention_algo_name(a));
  return out;
}

// sage rounds Q and the smoothed K to 8 bits (half a step of absmax/127 each);
// int8 also rounds V per channel and every probability to 1/255 of its block's
// largest (over a q8_0 cache: each weight times its token's V scale, to 1/127
// of the block's largest). On the tiny test model (random weights, prompts of 14-64 tokens)
// the logits moved by 1.8 % (sage) and 1.6 % (int8) of their largest
// magnitude: close to the default 2 %, so both declare 5 %, still far below a
// broken kernel (a wrong scale or a lost block moves logits by their own size).
double attention_logits_bound(const std::string& v) { return v == "exact" ? kLogitsBound : 0.05; }

std::string matmul_value(const MatmulOptions& m) {
  if (!m.allow_panels) return "vecdot";
  return m.amx == AmxUse::Always ? "amx" : "panels";
}

// kvcompress: off, a rate (2, 4, 8: the attention metric) or window[:RATE].
void install_kv_compress(EngineConfig& c, const std::string& v) {
  using Mode = KvCompressConfig::Mode;
  KvCompressConfig& k = c.kv_compress;
  k.rate = 0;
  if (v == "off") {
    k.mode = Mode::Off;
  } else if (v.rfind("window", 0) == 0) {
    k.mode = Mode::Window;
    if (v.size() > 7) k.rate = std::stoi(v.substr(7));  // "window:R"
  } else {
    k.mode = Mode::Metric;
    k.rate = std::stoi(v);
  }
}

std::string kv_compress_value(const EngineConfig& c) {
  using Mode = KvCompressConfig::Mode;
  const KvCompressConfig& k = c.kv_compress;
  if (k.mode == Mode::Off) return "off";
  if (k.mode == Mode::Window) return k.rate > 0 ? "window:" + std::to_string(k.rate) : "window";
  return std::to_string(k.rate);
}

// teal's value as the registry spells it: "off", "0.25", "0.4".
std::string teal_value(double sparsity) {
  if (sparsity <= 0.0) return "off";
  std::ostringstream out;
  out << sparsity;
  return out.str();
}

std::vector<SwitchSpec> make_specs() {
  return {
      {"isa",
       "kernel instruction set for every kernel (scalar twins, AVX2, AVX-512 + VNNI)",
       {"scalar", "avx2", "avx512"},
       "",
       isa_unsupported,
       [](EngineConfig& c, const std::string& v) { c.isa = parse_isa(v); },
       [](const EngineConfig& c) { return std::string(isa_name(c.isa)); },
       // The scalar twins sum floats in another order than the SIMD levels;
       // AVX2 and AVX-512 may agree bit for bit.
       [](const std::string& v) { return v == "scalar" ? SwitchEffect::Logits : SwitchEffect::Kernels; },
       {},
       [](const std::string&) { return true; }},
      {"kv",
       "KV cache element type of keys and values (llama.cpp's --cache-type names; its default is f16); "
       "reported as K/V when kv_k and kv_v differ; cq2, cq1: coupled quantization, 2 or 1 bits per channel "
       "through the model's codebooks (kestrel calibrate kv), the last --cq-window tokens in f16 too; cq2/cq1: "
       "2-bit keys with 1-bit values (both codebook files; cq1/cq2 the reverse)",
       kv_type_names(true), "f16", kv_unsupported,
       [](EngineConfig& c, const std::string& v) { std::tie(c.k_type, c.v_type) = kv_types_of(v); }, kv_value,
       kv_effect, kv_logits_bound},
      {"kv_k", "KV cache element type of keys (llama.cpp's -ctk)", kv_type_names(false), "f16", kv_unsupported,
       [](EngineConfig& c, const std::string& v) { c.k_type = *dtype_from_name(v); },
       [](const EngineConfig& c) { return std::string(dtype_name(c.k_type)); }, kv_effect, kv_logits_bound},
      {"kv_v", "KV cache element type of values (llama.cpp's -ctv)", kv_type_names(false), "f16", kv_unsupported,
       [](EngineConfig& c, const std::string& v) { c.v_type = *dtype_from_name(v); },
       [](const EngineConfig& c) { return std::string(dtype_name(c.v_type)); }, kv_effect, kv_logits_bound},
      {"kv_rot",
       "llama.cpp's Hadamard rotation of a block-quantized K or V cache (q8_0, q4_0, ...; head sizes that are "
       "multiples of 64): auto rotates as llama.cpp does (its LLAMA_ATTN_ROT_DISABLE=1 is off)",
       {"auto", "off"},
       "auto",
       always_supported,
       [](EngineConfig& c, const std::string& v) { c.kv_rotation = v == "auto"; },
       [](const EngineConfig& c) { return std::string(c.kv_rotation ? "auto" : "off"); },
       // Against the default configuration (an F16 cache, never rotated) nothing changes.
       [](const std::string&) { return SwitchEffect::Speed; }},
      {"attn",
       "attention algorithm: exact (float scores, llama.cpp's order), sage (SageAttention: K smoothed by its "
       "block mean, INT8 Q.K, float softmax and PV) or int8 (INT-FlashAttention: INT8 Q, K, V, P and an "
       "integer PV). sage with a block-quantized K (kv_k=q8_0, q4_0, ...: any V) and int8 with kv=q8_0 store "
       "K smoothed in the cache and read K (and int8 V) as integers, the layout that saves memory and "
       "bandwidth; with kv=f16 both quantize each 16-key block of the f16 cache on the fly",
       attention_values(), "exact", always_supported,
       [](EngineConfig& c, const std::string& v) { c.attention = *kernels::attention_algo_from_name(v); },
       [](const EngineConfig& c) { return std::string(kernels::attention_algo_name(c.attention)); },
       [](const std::string& v) { return v == "exact" ? SwitchEffect::Speed : SwitchEffect::Logits; },
       attention_logits_bound},
      {"threads",
       "worker threads of the forward pass",
       {},
       "",
       always_supported,
       [](EngineConfig& c, const std::string& v) { c.n_threads = std::stoi(v); },
       [](const EngineConfig& c) { return std::to_string(c.n_threads); },
       // Work is split by rows and summed in a fixed order: logits do not
       // depend on the thread count.
       [](const std::string&) { return SwitchEffect::Speed; }},
      {"matmul",
       "weight matmul kernels: 16-row panels (AVX-512 VNNI, or AVX2 maddubs) for every batch size, row-by-row vec_dot "
       "on the "
       "GGUF rows (session 1's decode path), or panels with AMX-INT8 tiles for whole 16-token tiles",
       {"panels", "vecdot", "amx"},
       "panels",
       matmul_unsupported,
       [](EngineConfig& c, const std::string& v) {
         c.matmul.allow_panels = v != "vecdot";
         c.matmul.amx = v == "amx" ? AmxUse::Always : AmxUse::Never;
       },
       [](const EngineConfig& c) { return matmul_value(c.matmul); },
       // AMX tiles compute the panels' integer products exactly, in the same order.
       [](const std::string& v) { return v == "amx" ? SwitchEffect::Speed : SwitchEffect::Logits; },
       {},
       [](const std::string&) { return true; }},
      {"act",
       "activation codes of the weight matmuls: a8 (int8 per block of 32 or 256, llama.cpp's) or a4 (W4A4: the same "
       "blocks holding 4-bit codes in [-7, 7], scale amax / 7, through the same integer kernels; a model with "
       "F32/F16/BF16 "
       "weight matrices is refused). Pair a4 with a FlatQuant file (kestrel quantize --flatquant) or a rotated one "
       "(--rotate --rotate-down)",
       {"a8", "a4"},
       "a8",
       always_supported,
       [](EngineConfig& c, const std::string& v) { c.matmul.activation_bits = v == "a4" ? 4 : 8; },
       [](const EngineConfig& c) { return std::string(c.matmul.activation_bits == 4 ? "a4" : "a8"); },
       [](const std::string& v) { return v == "a4" ? SwitchEffect::Logits : SwitchEffect::Speed; },
       // 4-bit activations move logits far more than rounding does.
       [](const std::string& v) { return v == "a4" ? 0.5 : kLogitsBound; }},
      {"sampling",
       "token sampler: the sort-based chain, or sorting-free pivot rejection sampling (same distribution); "
       "auto = the faster, sortfree",
       {"sort", "sortfree", "auto"},
       "sort",
       always_supported,
       [](EngineConfig& c, const std::string& v) { c.sampler = parse_sampler_kind(v); },
       [](const EngineConfig& c) { return std::string(sampler_kind_name(resolve_sampler_kind(c.sampler))); },
       [](const std::string&) { return SwitchEffect::Draws; }},
      {"kvcompress",
       "KV-Compress: after each prompt, evict whole KV blocks, a different number per (layer, kv head): 2, 4, 8 "
       "keep 1/RATE of a sequence's blocks, those the last 8 prompt queries gave the most squared attention "
       "(summed over each GQA group; the last 32 positions stay); window is StreamingLLM (the first block and "
       "the most recent ones, as many per head) at 1/4, or to kv_budget when one is given; window:R at 1/R. "
       "run, chat, bench, serve and longeval evict; perplexity refuses it (one forward pass per chunk)",
       {"off", "2", "4", "8", "window", "window:2", "window:8"},
       "off",
       always_supported,
       install_kv_compress,
       kv_compress_value,
       [](const std::string& v) { return v == "off" ? SwitchEffect::Speed : SwitchEffect::Evicts; }},
      {"teal",
       "TEAL: decode steps drop each projection's inputs at or below a calibrated threshold (the value: the "
       "model-wide share dropped, weighted by weight bytes) and read only the kept inputs' weight columns, "
       "from an input-major copy of the q/k/v/o/gate/up/down weights; prompts stay dense (perplexity scores "
       "every token as decoded). Needs MODEL.teal.gguf (`kestrel calibrate teal`) or --teal-file",
       {"off", "0.1", "0.2", "0.25", "0.3", "0.4", "0.5", "0.6", "0.7"},
       "off",
       always_supported,
       [](EngineConfig& c, const std::string& v) { c.teal.sparsity = v == "off" ? 0.0 : std::stod(v); },
       [](const EngineConfig& c) { return teal_value(c.teal.sparsity); },
       [](const std::string& v) { return v == "off" ? SwitchEffect::Speed : SwitchEffect::Thins; }},
      {"teal_act",
       "TEAL's sparse decode over 4-bit weights (Q4_0, Q4_1, Q4_K): f32 multiplies the kept inputs as floats; a7 "
       "codes each group of 32 inputs' kept values in 7 bits (scale max|x| / 63) and multiplies two inputs per "
       "vpmaddubsw, for CPUs whose decode is bound by arithmetic (AVX2 without VNNI). Other formats stay f32; "
       "nothing changes without teal",
       {"f32", "a7"},
       "f32",
       always_supported,
       [](EngineConfig& c, const std::string& v) { c.teal.paired = v == "a7"; },
       [](const EngineConfig& c) { return std::string(c.teal.paired ? "a7" : "f32"); },
       // Alone it changes nothing; with teal its codes are part of teal's thinning.
       [](const std::string&) { return SwitchEffect::Speed; }},
      {"kv_budget",
       "KV-Compress budget (--kv-budget N): after each prompt, and during decode once a sequence passes it, "
       "evict down to N positions per (layer, kv head) on average; with kvcompress=off it evicts by the "
       "attention metric alone; the server reserves KV blocks for a request up to this budget",
       {},
       "off",
       always_supported,
       [](EngineConfig& c, const std::string& v) { c.kv_compress.budget = v == "off" ? 0 : std::stoll(v); },
       [](const EngineConfig& c) {
         return c.kv_compress.budget > 0 ? std::to_string(c.kv_compress.budget) : std::string("off");
       },
       [](const std::string& v) { return v == "off" ? SwitchEffect::Speed : SwitchEffect::Evicts; }},
  };
}

}  // namespace

const std::vector<SwitchSpec>& switch_specs() {
  static const std::vector<SwitchSpec> specs = make_specs();
  return specs;
}

std::string settings_label(std::span<const SwitchSetting> s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : "+") + x.label();
  return out;
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
    if (!spec.baseline.empty() && s.value == spec.baseline) return s;  // kv_budget=off
    bool digits = !s.value.empty() && s.value.size() < 6;
    for (char c : s.value) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (!digits || std::stoi(s.value) <= 0)
      fail("switch ", s.name, " takes a positive integer", spec.baseline.empty() ? "" : " or " + spec.baseline,
           ", not '", s.value, "'");
  } else {
    bool known = false;
    for (const auto& v : spec.values) known = known || v == s.value;
    if (!known) {
      std::string vals;
      for (const auto& v : spec.values) vals += (vals.empty() ? "" : ", ") + v;
      const auto t = dtype_from_name(s.value);
      const bool cq_half = (s.name == "kv_k" || s.name == "kv_v") && t && is_cq(*t);
      fail("switch ", s.name, " has no value '", s.value, "' (values: ", vals, ")",
           cq_half
               ? "; CQ codes keys and values together: kv=cq2, kv=cq1 or K/V such as kv=cq2/cq1 (--cache-type cq2/cq1)"
               : "");
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

bool share_a_slot(const SwitchSetting& a, const SwitchSetting& b) {
  for (std::string_view x : slots_of(a))
    for (std::string_view y : slots_of(b))
      if (x == y) return true;
  return false;
}

void apply_switches(EngineConfig& config, const std::vector<SwitchSetting>& settings) {
  for (size_t i = 0; i < settings.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (settings[j].value == settings[i].value) continue;
      if (share_a_slot(settings[i], settings[j]))
        fail("switch ", settings[i].name, " is set twice, to ", settings[j].label(), " and to ", settings[i].label(),
             " (a flag such as -t, --isa, --cache-type, -ctk, -ctv or --sampler sets the same switch as "
             "--switch; kv sets both kv_k and kv_v)");
    }
    apply_switch(config, settings[i]);
  }
}

void check_engine_config(const EngineConfig& config) {
  if (config.attention != kernels::AttentionAlgo::Exact &&
      !kernels::has_attention_kernels(config.k_type, config.v_type, config.attention))
    fail("attn=", kernels::attention_algo_name(config.attention), " has no kernels for kv=", kv_value(config),
         config.attention == kernels::AttentionAlgo::Int8
             ? ": int8 runs over an f16 KV cache (it quantizes each 16-key block of K and V itself) or over "
               "INT8 K and V in the cache: use kv=f16 or kv=q8_0"
             : ": sage needs K as f16 (V f16) or a block-quantized K (kv_k=q8_0, q4_0, q4_1, q5_0, q5_1; any V)",
         ", or attn=exact with kv=", kv_value(config), " (pairs with kernels: ", kernels::attention_pairs_text(),
         ")");
  (void)kernels::attention_kernel_set(config.k_type, config.v_type, config.attention, config.isa);
}

double logits_bound(const SwitchSpec& spec, const std::string& value) {
  return spec.logits_bound ? spec.logits_bound(value) : kLogitsBound;
}

std::string kv_value(const EngineConfig& config) {
  if (config.k_type == config.v_type) return std::string(dtype_name(config.k_type));
  return std::string(dtype_name(config.k_type)) + "/" + std::string(dtype_name(config.v_type));
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

}  // namespace kestrel
