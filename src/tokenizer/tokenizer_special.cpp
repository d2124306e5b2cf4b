// The rules by which llama.cpp's vocab loader adjusts token attributes and picks
// the end-of-generation tokens from token texts (GGUF files often lack the ids).
#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_impl.h"

namespace kestrel {

namespace {

using Names = std::span<const std::string_view>;

// Texts that mark a role when the GGUF gives no id for it.
constexpr std::string_view kEotNames[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                             "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                             "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                             "<end_of_utterance>"};
constexpr std::string_view kEomNames[] = {"<|eom_id|>"};
constexpr std::string_view kFimPreNames[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
                                "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"};
constexpr std::string_view kFimSufNames[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>",
                                "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"};
constexpr std::string_view kFimMidNames[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
                                "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"};
constexpr std::string_view kFimPadNames[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
constexpr std::string_view kFimRepNames[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"};
constexpr std::string_view kFimSepNames[] = {"<|file_sep|>"};

// Texts that end generation whatever the ids say.
constexpr std::string_view kEogNames[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                             "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
                             "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
                             "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                             "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                             "[e~["};

// Always rendered (gpt-oss): these become plain user-defined tokens.
constexpr std::string_view kUserDefinedNames[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};

bool in(Names names, std::string_view s) {
  // Every listed name starts with '<', '[', '_' or U+2581 (E2 ..): skip the rest fast.
  if (s.empty() || (s[0] != '<' && s[0] != '[' && s[0] != '_' && s[0] != '\xE2')) return false;
  return std::find(names.begin(), names.end(), s) != names.end();
}

uint32_t attr_from_type(int32_t type) {
  switch (TokenType(type)) {
    case TokenType::Unknown: return kAttrUnknown;
    case TokenType::Unused: return kAttrUnused;
    case TokenType::Normal: return kAttrNormal;
    case TokenType::Control: return kAttrControl;
    case TokenType::UserDefined: return kAttrUserDefined;
    case TokenType::Byte: return kAttrByte;
    default: return kAttrUndefined;
  }
}

}  // namespace

void tok::derive_special_tokens(TokenizerImpl& t) {
  const auto& tokens = t.spec.tokens;
  const int32_t n = int32_t(tokens.size());
  auto& attrs = t.attrs;
  attrs.resize(n);
  for (int32_t i = 0; i < n; ++i)
    attrs[i] = t.spec.token_types.empty() ? uint32_t(kAttrNormal) : attr_from_type(t.spec.token_types[i]);

  // llama.cpp walks its text->id map; a text listed twice counts once, under
  // its last id.
  std::vector<bool> unique(n);
  for (int32_t id = 0; id < n; ++id) unique[id] = t.index.find(tokens[id]) == id;
  auto unique_text = [&](int32_t id) { return bool(unique[id]); };

  int32_t fim_ids[8] = {t.spec.fim_pre_id, t.spec.fim_suf_id, t.spec.fim_mid_id, t.spec.fim_pad_id,
                        t.spec.fim_rep_id, t.spec.fim_sep_id, t.spec.eot_id, t.spec.eom_id};
  const Names role_names[8] = {kFimPreNames, kFimSufNames, kFimMidNames, kFimPadNames,
                               kFimRepNames, kFimSepNames, kEotNames,    kEomNames};
  // Candidates per unset role, in id order.
  std::vector<int32_t> candidates[8];
  bool ambiguous = false;
  for (int32_t id = 0; id < n; ++id) {
    if (!unique_text(id)) continue;
    for (int r = 0; r < 8; ++r) {
      if (fim_ids[r] == -1 && in(role_names[r], tokens[id])) {
        candidates[r].push_back(id);
        ambiguous |= candidates[r].size() > 1;
      }
    }
  }
  // A role takes the first candidate in llama.cpp's walk, which is the iteration
  // order of a std::unordered_map<std::string, int> filled in id order (e.g. Qwen2
  // has both <|endoftext|> and <|im_end|> for EOT; llama.cpp picks <|im_end|>).
  // Rebuilding that map reproduces the order with the same standard library (a
  // string_view key hashes as the string and leaves the bucket walk unchanged);
  // it is only done when some role has more than one candidate.
  if (ambiguous) {
    std::unordered_map<std::string_view, int32_t> walk;
    for (int32_t id = 0; id < n; ++id) walk[tokens[id]] = id;
    std::vector<size_t> rank(n, 0);
    size_t i = 0;
    for (const auto& kv : walk) rank[kv.second] = i++;
    for (auto& c : candidates)
      std::stable_sort(c.begin(), c.end(), [&](int32_t a, int32_t b) { return rank[a] < rank[b]; });
  }
  for (int r = 0; r < 8; ++r) {
    if (candidates[r].empty()) continue;
    fim_ids[r] = candidates[r].front();
    attrs[fim_ids[r]] |= kAttrControl;  // a role token is control even if typed otherwise
  }
  t.eot = fim_ids[6];
  t.eom = fim_ids[7];

  // Control tokens named "...unused..." are unused.
  for (int32_t id = 0; id < n; ++id) {
    if (unique_text(id) && (attrs[id] & kAttrControl) && tokens[id].find("unused") != std::string::npos)
      attrs[id] |= kAttrUnused;
  }

  std::vector<int32_t> eog;
  for (int r : {3, 4, 5})  // fim pad, repo, file separator
    if (fim_ids[r] >= 0) eog.push_back(fim_ids[r]);
  for (int32_t id = 0; id < n; ++id) {
    if (unique_text(id) && in(kEogNames, tokens[id])) {
      eog.push_back(id);
      attrs[id] |= kAttrControl;
    }
  }
  for (int32_t id = 0; id < n; ++id)
    if (unique_text(id) && in(kUserDefinedNames, tokens[id])) attrs[id] = kAttrUserDefined;
  for (int32_t id : {t.spec.eos_id, t.eot, t.eom})
    if (id >= 0) eog.push_back(id);
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());

  auto eog_with_text = [&](std::string_view s) -> int32_t {
    for (int32_t id : eog)
      if (tokens[id] == s) return id;
    return -1;
  };
  auto drop_eog = [&](int32_t id, uint32_t new_attr) {
    eog.erase(std::find(eog.begin(), eog.end(), id));
    attrs[id] = new_attr;
  };
  // Harmony-style vocabs (gpt-oss, solar-open): <|end|> ends a message, not the turn.
  {
    const bool ret = eog_with_text("<|return|>") >= 0;
    const bool call = eog_with_text("<|call|>") >= 0 || eog_with_text("<|calls|>") >= 0;
    const bool flush = eog_with_text("<|flush|>") >= 0;
    const int32_t end = eog_with_text("<|end|>");
    if (end >= 0 && call && (ret || flush)) drop_eog(end, kAttrUserDefined);
  }
  // Gemma 4 and PLaMo 2 use </s> as an ordinary token.
  {
    const int32_t s = eog_with_text("</s>");
    if (s >= 0 && (eog_with_text("<|tool_response>") >= 0 || eog_with_text("<|plamo:eos|>") >= 0))
      drop_eog(s, kAttrNormal);
  }
  t.eog = std::move(eog);

  // Special-token split order: longest text first (ties by id, for determinism).
  t.specials.clear();
  for (int32_t id = 0; id < n; ++id)
    if (attrs[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) t.specials.push_back(id);
  std::stable_sort(t.specials.begin(), t.specials.end(),
                   [&](int32_t a, int32_t b) { return tokens[a].size() > tokens[b].size(); });
}

}  // namespace kestrel
