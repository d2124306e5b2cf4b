#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <sstream>

#include "core/error.h"

namespace kestrel::tok {

namespace {

// Character classes written out instead of \s, \p{L}, \p{N}, \p{P}, so that they
// agree with llama.cpp's tables rather than with whatever PCRE2 build is present:
//  - whitespace is Unicode's White_Space property (PCRE2's \s lacks U+0085);
//  - llama.cpp's tables follow Unicode 15.1, PCRE2 10.42 follows Unicode 14; the
//    extra ranges are the letters, numbers and punctuation added since (found by
//    comparing the two tables code point by code point).
constexpr std::string_view kWs =
    "\\t\\n\\x0B\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";
constexpr std::string_view kL =
    "\\p{L}\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}"
    "\\x{1342F}\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}"
    "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}"
    "\\x{31350}-\\x{323AF}";
constexpr std::string_view kN = "\\p{N}\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}";
constexpr std::string_view kP = "\\p{P}\\x{11B00}-\\x{11B09}\\x{11F43}-\\x{11F4F}";

// Expands {WS} {L} {N} {P} (class bodies, used inside [...]) in a pattern template.
std::string expand(std::string_view tmpl) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] == '{') {
      const size_t close = tmpl.find('}', i);
      const std::string_view key = tmpl.substr(i + 1, close - i - 1);
      if (key == "WS") out += kWs;
      else if (key == "L") out += kL;
      else if (key == "N") out += kN;
      else if (key == "P") out += kP;
      else {
        out += tmpl.substr(i, close - i + 1);  // a real quantifier such as {1,3}
      }
      i = close + 1;
      continue;
    }
    out += tmpl[i++];
  }
  return out;
}

// GPT-2: contractions, optional-space letter/number/other runs, whitespace that
// leaves its last char to the next word, then any whitespace.
constexpr std::string_view kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{WS}{L}{N}]+|[{WS}]+(?![^{WS}])|[{WS}]+";

// Llama 3 (tiktoken cl100k): case-insensitive contractions, a letter run with one
// optional non-letter prefix, digit groups, symbol runs with trailing newlines,
// newline-terminated whitespace, then whitespace as in GPT-2.
constexpr std::string_view kLlama3 =
    "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\\r\\n{L}{N}]?[{L}]+|[{N}]{1,3}"
    "| ?[^{WS}{L}{N}]+[\\r\\n]*|[{WS}]*[\\r\\n]+|[{WS}]+(?![^{WS}])|[{WS}]+";

// Qwen2: Llama 3's regex with one digit per word.
constexpr std::string_view kQwen2 =
    "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\\r\\n{L}{N}]?[{L}]+|[{N}]"
    "| ?[^{WS}{L}{N}]+[\\r\\n]*|[{WS}]*[\\r\\n]+|[{WS}]+(?![^{WS}])|[{WS}]+";

std::vector<std::string_view> family_patterns(PreFamily f) {
  switch (f) {
    case PreFamily::Default:
      return {"[{P}\\$\\+<=>\\^~\\|]+", kGpt2, "[{N}]+", "[0-9][0-9][0-9]"};
    case PreFamily::Gpt2: return {kGpt2};
    case PreFamily::DigitsGpt2: return {"[{N}]", kGpt2};
    case PreFamily::Llama3: return {kLlama3};
    case PreFamily::Qwen2: return {kQwen2};
  }
  return {};
}

// name, family, clean_spaces, ignore_merges, add_bos — as llama.cpp's vocab loader
// assigns them. Names we do not list are rejected rather than guessed.
constexpr PreInfo kPres[] = {
    {"default", PreFamily::Default, true, false, false},
    {"gpt-2", PreFamily::Gpt2, true, false, false},
    {"phi-2", PreFamily::Gpt2, true, false, false},
    {"jina-es", PreFamily::Gpt2, true, false, false},
    {"jina-de", PreFamily::Gpt2, true, false, false},
    {"jina-v2-es", PreFamily::Gpt2, true, false, false},
    {"jina-v2-de", PreFamily::Gpt2, true, false, false},
    {"jina-v1-en", PreFamily::Gpt2, true, false, false},
    {"jina-v2-code", PreFamily::Gpt2, true, false, false},
    {"roberta-bpe", PreFamily::Gpt2, true, false, false},
    {"gigachat", PreFamily::Gpt2, true, false, false},
    {"a.x-4.0", PreFamily::Gpt2, true, false, false},
    {"mellum", PreFamily::Gpt2, true, false, false},
    {"modern-bert", PreFamily::Gpt2, true, false, false},
    {"exaone4", PreFamily::Gpt2, true, false, false},
    {"mpt", PreFamily::Gpt2, true, false, false},
    {"olmo", PreFamily::Gpt2, true, false, false},
    {"jais", PreFamily::Gpt2, true, false, false},
    {"trillion", PreFamily::Gpt2, false, false, false},
    {"granite-docling", PreFamily::Gpt2, false, false, false},
    {"starcoder", PreFamily::DigitsGpt2, true, false, false},
    {"refact", PreFamily::DigitsGpt2, true, false, false},
    {"command-r", PreFamily::DigitsGpt2, false, false, false},
    {"smollm", PreFamily::DigitsGpt2, false, false, false},
    {"codeshell", PreFamily::DigitsGpt2, true, false, false},
    {"exaone", PreFamily::DigitsGpt2, true, false, false},
    {"minerva-7b", PreFamily::DigitsGpt2, true, false, false},
    {"mellum2", PreFamily::DigitsGpt2, true, false, false},
    {"llama3", PreFamily::Llama3, true, true, true},
    {"llama-v3", PreFamily::Llama3, true, true, true},
    {"llama-bpe", PreFamily::Llama3, true, true, true},
    {"falcon3", PreFamily::Llama3, true, true, true},
    {"falcon-h1", PreFamily::Llama3, true, true, true},
    {"pixtral", PreFamily::Llama3, true, true, true},
    {"midm-2.0", PreFamily::Llama3, true, true, true},
    {"lfm2", PreFamily::Llama3, true, true, true},
    {"jina-v5-nano", PreFamily::Llama3, true, true, true},
    {"dbrx", PreFamily::Llama3, true, false, false},
    {"smaug-bpe", PreFamily::Llama3, true, false, false},
    {"qwen2", PreFamily::Qwen2, false, false, false},
    {"deepseek-r1-qwen", PreFamily::Qwen2, false, false, false},
    {"kormo", PreFamily::Qwen2, false, false, false},
    {"f2llmv2", PreFamily::Qwen2, false, false, false},
    {"megrez", PreFamily::Qwen2, true, false, false},
    {"stablelm2", PreFamily::Qwen2, true, false, false},
    {"hunyuan", PreFamily::Qwen2, false, false, false},
    {"solar-open", PreFamily::Qwen2, false, false, false},
};

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
using CodePtr = std::unique_ptr<pcre2_code, CodeDeleter>;

// Per-thread match state: PCRE2 match data and JIT stack are not shareable.
struct ThreadMatchState {
  pcre2_match_data* data = pcre2_match_data_create(4, nullptr);
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  // Long runs of one class (a 100k-letter "word") need more than the default 32K.
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  ThreadMatchState() { pcre2_jit_stack_assign(ctx, nullptr, stack); }
  ~ThreadMatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
    pcre2_match_data_free(data);
  }
};

ThreadMatchState& match_state() {
  thread_local ThreadMatchState state;
  return state;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

const PreInfo* find_pre_info(std::string_view name) {
  if (name.empty()) name = "default";
  for (const auto& p : kPres)
    if (p.name == name) return &p;
  return nullptr;
}

std::string supported_pre_names() {
  std::ostringstream os;
  for (size_t i = 0; i < std::size(kPres); ++i) os << (i ? ", " : "") << kPres[i].name;
  return os.str();
}

struct PreTokenizer::Impl {
  std::vector<CodePtr> passes;
};

PreTokenizer::PreTokenizer(PreFamily family) : impl_(std::make_unique<Impl>()) {
  for (std::string_view tmpl : family_patterns(family)) {
    const std::string pattern = expand(tmpl);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (code == nullptr)
      fail("tokenizer: pre-tokenizer regex does not compile at offset ", err_off, ": ",
           pcre2_message(err), " (pattern ", pattern, ")");
    // JIT is an optimisation: without it (unsupported build) matching still works.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    impl_->passes.emplace_back(code);
  }
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::string_view text, std::vector<size_t>& ends) const {
  ends.clear();
  if (text.empty()) return;

  // PCRE2 rejects encoded surrogates (ED A0..BF xx), which llama.cpp lets through
  // from invalid input. Match on a copy where each becomes U+E000 (EE 80 80): same
  // length, and like a surrogate it is neither letter, number, punctuation nor space.
  std::string patched;
  std::string_view subject = text;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (uint8_t(text[i]) == 0xED && uint8_t(text[i + 1]) >= 0xA0) {
      if (patched.empty()) patched.assign(text);
      patched[i] = char(0xEE);
      patched[i + 1] = char(0x80);
      patched[i + 2] = char(0x80);
    }
  }
  if (!patched.empty()) subject = patched;

  ThreadMatchState& st = match_state();
  std::vector<size_t> cur{text.size()};
  std::vector<size_t> next;
  const auto* base = reinterpret_cast<PCRE2_SPTR>(subject.data());
  for (const CodePtr& code : impl_->passes) {
    next.clear();
    size_t seg_begin = 0;
    for (size_t seg_end : cur) {
      // The piece alone is the subject, so lookaheads stop at its end.
      const PCRE2_SPTR seg = base + seg_begin;
      const size_t seg_len = seg_end - seg_begin;
      size_t pos = 0;   // where the next search starts
      size_t done = 0;  // end of what has been emitted
      while (pos < seg_len) {
        const int rc = pcre2_match(code.get(), seg, seg_len, pos, PCRE2_NO_UTF_CHECK, st.data, st.ctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("tokenizer: pre-tokenizer regex failed: ", pcre2_message(rc));
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
        const size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // our patterns never match empty; step over one char anyway
          pos = ms + 1;
          while (pos < seg_len && (seg[pos] & 0xC0) == 0x80) ++pos;
          continue;
        }
        if (ms > done) next.push_back(seg_begin + ms);
        next.push_back(seg_begin + me);
        done = pos = me;
      }
      if (done < seg_len) next.push_back(seg_end);
      seg_begin = seg_end;
    }
    cur.swap(next);
  }
  ends = std::move(cur);
}

}  // namespace kestrel::tok
