// Tokenizer construction and encoding.
#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace kestrel {

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// A piece of the input: raw text, or a special token already recognised.
struct Fragment {
  int32_t token;  // -1 for raw text
  size_t off, len;
};

// Splits the text at special tokens, longest token text first: each token in turn
// cuts every raw fragment at all its (non-overlapping, leftmost-first) occurrences.
// Control and unknown tokens only take part when parse_special.
std::vector<Fragment> split_special(const tok::TokenizerImpl& t, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : t.specials) {
    if (!parse_special && (t.attrs[id] & (kAttrControl | kAttrUnknown))) continue;
    const std::string& s = t.spec.tokens[id];
    bool found = false;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const std::string_view raw = text.substr(f.off, f.len);
      size_t pos = 0;
      for (;;) {
        const size_t hit = raw.find(s, pos);
        if (hit == std::string_view::npos) break;
        found = true;
        if (hit > pos) next.push_back({-1, f.off + pos, hit - pos});
        next.push_back({id, 0, 0});
        pos = hit + s.size();
      }
      if (pos < f.len) next.push_back({-1, f.off + pos, f.len - pos});
    }
    if (found) frags.swap(next);
  }
  return frags;
}

void check_id(const VocabSpec& spec, int32_t& id) {
  if (id < -1 || id >= int32_t(spec.tokens.size())) id = -1;
}

}  // namespace

tok::TokenizerImpl::TokenizerImpl(VocabSpec s) : spec(std::move(s)) {
  if (spec.model == "llama") {
    is_spm = true;
  } else if (spec.model == "gpt2") {
    pre = tok::find_pre_info(spec.pre);
    if (pre == nullptr)
      fail("tokenizer: unknown pre-tokenizer '", spec.pre, "' (tokenizer.ggml.pre); supported: ",
           tok::supported_pre_names());
  } else {
    fail("tokenizer: unsupported tokenizer model '", spec.model,
         "' (tokenizer.ggml.model); supported: gpt2 (byte-level BPE), llama (SentencePiece)");
  }
  const size_t n = spec.tokens.size();
  if (n == 0) fail("tokenizer: the vocabulary is empty");
  if (n > size_t(INT32_MAX)) fail("tokenizer: vocabulary of ", n, " tokens is too large");
  if (!spec.scores.empty() && spec.scores.size() < n)
    fail("tokenizer: ", spec.scores.size(), " scores for ", n, " tokens");
  if (!spec.token_types.empty() && spec.token_types.size() < n)
    fail("tokenizer: ", spec.token_types.size(), " token types for ", n, " tokens");
  if (!is_spm && spec.merges.empty())
    fail("tokenizer: BPE vocabulary has no merges (tokenizer.ggml.merges)");

  for (size_t i = 0; i < n; ++i)
    if (spec.tokens[i].empty()) spec.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
  for (int32_t* id : {&spec.bos_id, &spec.eos_id, &spec.eot_id, &spec.eom_id, &spec.unk_id, &spec.sep_id,
                      &spec.pad_id, &spec.mask_id, &spec.fim_pre_id, &spec.fim_suf_id, &spec.fim_mid_id,
                      &spec.fim_pad_id, &spec.fim_rep_id, &spec.fim_sep_id})
    check_id(spec, *id);

  index.build(spec.tokens);

  tok::derive_special_tokens(*this);

  if (is_spm) {
    spm = std::make_unique<tok::SpmMerger>(spec.scores, index, spec.unk_id);
  } else {
    pretok = std::make_unique<tok::PreTokenizer>(pre->family);
    bpe = std::make_unique<tok::BpeMerger>(spec.tokens, index, spec.merges);
  }
  pieces.resize(n);
  for (size_t i = 0; i < n; ++i) pieces[i] = tok::make_piece(*this, int32_t(i));
}

Tokenizer::Tokenizer(VocabSpec spec) : impl_(std::make_shared<const tok::TokenizerImpl>(std::move(spec))) {}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const tok::TokenizerImpl& t = *impl_;
  std::vector<int32_t> out;
  const std::vector<Fragment> frags = split_special(t, text, parse_special);

  if (add_special && t.spec.add_bos) {
    if (t.spec.bos_id < 0) fail("tokenizer: the vocab adds BOS but has no BOS token");
    out.push_back(t.spec.bos_id);
  }
  if (t.is_spm) {
    tok::SpmMerger::Scratch scratch;
    std::string escaped;
    bool prev_special = true;  // the text's start counts as after a special token
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      escaped.clear();
      if (t.spec.add_space_prefix && prev_special) escaped += kSpmSpace;
      for (char c : text.substr(f.off, f.len)) {
        if (c == ' ') escaped += kSpmSpace;
        else escaped += c;
      }
      t.spm->encode(escaped, scratch, out);
      prev_special = false;
    }
  } else {
    tok::BpeMerger::Scratch scratch;
    std::vector<size_t> ends;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      const std::string clean = tok::utf8_sanitize(text.substr(f.off, f.len));
      t.pretok->split(clean, ends);
      size_t begin = 0;
      for (size_t end : ends) {
        t.bpe->encode_word(std::string_view(clean).substr(begin, end - begin), t.pre->ignore_merges,
                           scratch, out);
        begin = end;
      }
    }
  }
  if (add_special && t.spec.add_eos) {
    if (t.spec.eos_id < 0) fail("tokenizer: the vocab adds EOS but has no EOS token");
    out.push_back(t.spec.eos_id);
  }
  return out;
}

int32_t Tokenizer::n_vocab() const { return int32_t(impl_->spec.tokens.size()); }
int32_t Tokenizer::bos() const { return impl_->spec.bos_id; }
int32_t Tokenizer::eos() const { return impl_->spec.eos_id; }
int32_t Tokenizer::eot() const { return impl_->eot; }
const VocabSpec& Tokenizer::spec() const { return impl_->spec; }
std::vector<int32_t> Tokenizer::eog_ids() const { return impl_->eog; }

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(impl_->eog.begin(), impl_->eog.end(), id);
}

uint32_t Tokenizer::token_attr(int32_t id) const {
  return id >= 0 && id < n_vocab() ? impl_->attrs[id] : 0;
}

bool Tokenizer::is_control(int32_t id) const { return token_attr(id) & kAttrControl; }

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) fail("tokenizer: token id ", id, " is out of range [0, ", n_vocab(), ")");
  return impl_->spec.tokens[id];
}

}  // namespace kestrel
