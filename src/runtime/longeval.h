#pragma once
// Pass-key retrieval, the standard long-context test (Landmark attention,
// Mohtashami & Jaggi 2023; LongLoRA, Chen et al. 2023): a random 5-digit key is
// hidden at a chosen depth inside repeated filler text, between an instruction
// and a question; the model is asked for the key and decodes greedily; a trial
// passes when the first 5-digit number it writes equals the key.
//
//   [BOS] instruction  filler x (depth * N sentences)  key sentence
//         filler x ((1 - depth) * N sentences)  question  -> greedy answer
//
// The prompt is built from pieces tokenized one by one (instruction, each filler
// sentence, key sentence, question), so that every trial's tokens up to its key
// are exactly the same tokens: N is the largest number of filler sentences that
// leaves room for the answer within the context.
//
// Shared work (what this host does instead of evaluating each prompt from an
// empty cache): the filler before the key is the same tokens at every depth, so
// the prompt of a trial at depth d and that of a trial at depth d' >= d agree up
// to d's key. The trials of one context run in order of decreasing depth on one
// Session, whose set_history rolls the KV cache back to the longest common prefix
// with the previous trial (KvCache::set_seq_len; copy-on-write sharing between
// sequences, KvCache::share_prefix, would buy nothing more for one sequence at a
// time). Each trial then evaluates only from its own key onwards: the first trial
// of the run evaluates its whole prompt, each later one (1 - depth) of the filler
// plus the key and the question, about half of the prompt tokens over evenly
// spread depths, with the same logits as a fresh evaluation (the cached rows are
// those a fresh evaluation would store; tests/unit/runtime/longeval_test.cpp).
// `reuse_prefix = false` clears the cache before every trial instead.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "switches/engine_config.h"

namespace kestrel {

class KvCache;

// The texts of the test (LongLoRA's passkey_retrieval.py wording).
struct PasskeyTexts {
  std::string instruction =
      "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you "
      "about the important information there.";
  // Filler sentences, repeated in this order.
  std::vector<std::string> filler = {" The grass is green.", " The sky is blue.", " The sun is yellow.", " Here we go.",
                                     " There and back again."};
  // {KEY} is replaced by the key.
  std::string key_sentence = " The pass key is {KEY}. Remember it. {KEY} is the pass key.";
  std::string question = " What is the pass key?";
  // Raw text: follows the question; with a chat template: opens the assistant's turn.
  std::string answer_start = " The pass key is";
};

// One prompt, and where its parts are.
struct PasskeyPrompt {
  std::vector<int32_t> tokens;
  int64_t filler_begin = 0;   // token index of the first filler sentence
  int64_t filler_tokens = 0;  // filler tokens in all (before and after the key)
  int64_t key_begin = 0;      // token index where the key sentence starts
  int64_t key_end = 0;        // one past its last token
  int n_filler_before = 0;    // filler sentences before the key
};

// Tokenizes the pieces once per model. With `chat`, the instruction, filler, key
// and question are the user's message of the model's chat template (or of the
// built-in `chat_template` if not empty) and the answer starts the assistant's
// turn with "The pass key is"; otherwise the prompt is raw text (BOS per vocab).
class PasskeyPromptBuilder {
 public:
  PasskeyPromptBuilder(const Tokenizer& tok, bool chat = false, std::string_view chat_template = {},
                       PasskeyTexts texts = {});

  // Tokens of the prompt around the filler: head, key sentence for `key`, tail.
  int64_t fixed_tokens(std::string_view key) const;
  // Tokens of the first n filler sentences.
  int64_t filler_tokens(int n) const;
  // The most filler sentences with which the prompt for every key in `keys` plus
  // n_answer tokens fits in n_ctx; -1 when not even one fits.
  int max_filler(int64_t n_ctx, int n_answer, std::span<const std::string> keys) const;
  // The prompt with n_filler sentences and the key after round(depth * n_filler) of them.
  PasskeyPrompt build(int n_filler, double depth, std::string_view key) const;
  // The longest filler sentence, in tokens (the depth's resolution).
  int64_t max_sentence_tokens() const;

 private:
  const Tokenizer& tok_;
  PasskeyTexts texts_;
  std::vector<int32_t> head_;                 // BOS, chat prefix, instruction
  std::vector<std::vector<int32_t>> filler_;  // per filler sentence
  std::vector<int32_t> tail_;                 // question (+ chat suffix and answer start)
  std::string chat_;                          // "" = raw
};

// The first run of exactly 5 digits in `text` (a longer or shorter run of
// digits is not a 5-digit number and is skipped); "" when there is none.
std::string first_five_digit_number(std::string_view text);

// One trial of the schedule.
struct PasskeyTrial {
  int index = 0;        // 0-based, in schedule order
  int depth_index = 0;  // 0 .. n_depths-1
  double depth = 0.0;   // depth_index / (n_depths - 1): 0 = key first, 1 = key last
  std::string key;      // 5 digits
};

// n_trials trials spread evenly over n_depths depths (trial i at depth i % n_depths,
// so the counts per depth differ by at most one), keys drawn uniformly from
// 10000..99999 by a generator seeded with `seed`: the same schedule for the same
// arguments. Throws for n_trials < 1 or n_depths < 1.
std::vector<PasskeyTrial> passkey_schedule(int n_trials, int n_depths, uint64_t seed);

// Bytes of the KV cache: `held` = blocks in use x bytes per block (K, V and the
// smoothed keys' means: what the tokens cached occupy), plus a CQ cache's F16
// copies and its codebooks (KvCache::bytes_held); `resident` = pages of the
// cache's pools in RAM (mincore: the pools are committed page by page and keep
// pages a shortened sequence gave back, so this is the high-water mark), plus
// the codebooks; `reserved` = the pools' address space and the codebooks
// (KvCache::bytes()).
struct KvBytes {
  int64_t held = 0;
  int64_t resident = 0;
  int64_t reserved = 0;
  int64_t tokens = 0;  // positions cached
};
KvBytes measure_kv_bytes(const KvCache& cache, int seq = 0);

struct LongevalOptions {
  std::vector<int64_t> n_ctx{2048};  // context lengths to test, tokens
  int n_trials = 50;                 // per context length
  int n_depths = 10;
  uint64_t seed = 42;
  int n_answer = 8;  // greedy tokens generated (stops early after a 5-digit number)
  int n_batch = 512;
  bool chat = false;
  std::string chat_template;  // with chat: a built-in template instead of the model's
  bool reuse_prefix = true;   // see the header comment
  EngineConfig engine;        // with KV-Compress: kvcompress, kv_budget (runtime/kv_compressor.h)
};

struct PasskeyTrialResult {
  PasskeyTrial trial;
  std::string output;  // the generated text
  std::string answer;  // first_five_digit_number(output)
  bool pass = false;
  std::vector<int32_t> generated;
  int64_t key_pos = 0;           // token index of the key sentence
  int64_t prompt_tokens = 0;     // the whole prompt
  int64_t evaluated_tokens = 0;  // prompt tokens evaluated (the rest were cached)
  double prompt_seconds = 0.0;
  double generate_seconds = 0.0;
  KvBytes kv;  // at the end of the trial
};

struct DepthResult {
  double depth = 0.0;
  int trials = 0;
  int passed = 0;
};

struct LongevalContextResult {
  int64_t n_ctx = 0;
  int64_t prompt_tokens = 0;  // of the longest prompt
  int n_filler = 0;           // filler sentences
  std::vector<DepthResult> depths;
  std::vector<PasskeyTrialResult> trials;  // in schedule order
  int passed = 0;
  int64_t prompt_tokens_total = 0;     // sum of the prompts' lengths
  int64_t evaluated_tokens_total = 0;  // prompt tokens actually evaluated
  double prompt_seconds = 0.0;
  double generate_seconds = 0.0;
  double seconds = 0.0;  // wall time of this context's trials
  KvBytes kv_max;        // the largest figures at the end of a trial
  double pass_rate() const { return trials.empty() ? 0.0 : static_cast<double>(passed) / trials.size(); }
};

struct LongevalResult {
  std::string model;  // general.name or arch
  std::vector<LongevalContextResult> contexts;
  LongevalOptions options;
  EngineConfig engine;  // resolved
  double seconds = 0.0;
};

struct LongevalProgress {
  int64_t n_ctx = 0;
  int trial = 0;  // done in this context (1-based count)
  int n_trials = 0;
  int passed = 0;
  const PasskeyTrialResult* last = nullptr;
  double seconds = 0.0;      // in this context
  double eta_seconds = 0.0;  // this context, at the pace per evaluated token so far
  const EngineConfig* engine = nullptr;
};
using LongevalProgressFn = std::function<void(const LongevalProgress&)>;

// Checks the options against the model before any work: every context must fit
// in the model's trained context (named when not) and hold the instruction, one
// filler sentence, the key, the question and the answer (the minimum is named).
void check_longeval_options(const Model& model, const LongevalOptions& options);

LongevalResult run_longeval(const Model& model, const LongevalOptions& options,
                            const LongevalProgressFn& progress = {});

// Markdown tables: pass rate per depth and context, then one line per context
// (pass rate, prompt tokens, tokens/s, KV bytes).
std::string format_longeval_markdown(const LongevalResult& r);
std::string format_longeval_json(const LongevalResult& r);

}  // namespace kestrel
