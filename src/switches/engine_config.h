#pragma once
// The engine configuration: one typed slot per switchable part of the engine.
// Every host (Session for run/chat/bench, the Scheduler for serve, the
// perplexity/KLD evaluator) builds its engine core (runtime/engine_core.h) from
// one of these. A switch is a registry entry (switches/registry.h) that
// installs a value into its slot; nothing else reads switches, and no kernel
// looks at the environment. docs/architecture.md has the picture.
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "kernels/attention_set.h"
#include "ops/matmul.h"
#include "platform/cpu.h"
#include "sampling/params.h"

namespace kestrel {

// How tokens are produced after the prompt: the slot speculative decoding
// (runtime/speculative.h) plugs into. Drafters propose tokens; the target
// checks them all in one forward pass and keeps what its own sampling would
// have produced (lossless). Spelled as llama.cpp's --spec-type values.
enum class DecodePolicy : uint8_t {
  Plain,        // "none": one forward pass of the target model per token
  DraftModel,   // "draft-simple": a smaller model with the same vocabulary drafts greedily (-md)
  NgramSimple,  // "ngram-simple": the tokens that followed the last n-gram's previous occurrence
  Auto,         // "auto": n-gram lookup where it finds a match, else the draft model if one is given
  Eagle3,       // "draft-eagle3": an EAGLE-3 head (-md) drafts from the target's hidden states
  // "qspec" (QSpec, PAPERS.md card 10): the target's own weights draft
  // greedily with 4-bit activations (act=a4) over a KV cache of their own;
  // the target verifies with its activations as configured.
  QSpec,
};

struct DecodeConfig {
  DecodePolicy policy = DecodePolicy::Plain;
  std::string draft_model;    // -md: the draft model's GGUF (DraftModel, Auto)
  std::string eagle3_head;    // the EAGLE-3 head's GGUF (Eagle3, Auto): -md naming one, or --spec-eagle3-head
  int draft_max = 16;         // --spec-draft-n-max: tokens drafted per target pass at most
  int draft_min = 0;          // --spec-draft-n-min: drafts shorter than this are not verified
  // --spec-branches: a drafter that runs a model (draft-simple, draft-eagle3,
  // qspec, auto's model) may also draft the next most likely first tokens,
  // each as a branch of its own (runtime/draft_tree.h), up to this many
  // branches in all; 1: a chain. run, chat and bench (Session); serve drafts chains.
  int draft_branches = 1;
  // --spec-draft-p-min: a drafter stops before a token less likely than this
  // (runtime/drafter.h DraftStop). Negative (the default): 0 with adaptive
  // lengths, whose path floor decides where drafts stop; 0.75, llama.cpp's
  // default, with --spec-fixed. resolved_p_min() gives the value used.
  float draft_p_min = -1.0f;
  float resolved_p_min() const { return draft_p_min >= 0.0f ? draft_p_min : adaptive ? 0.0f : 0.75f; }
  // --spec-draft-vocab: a token ranking (model/draft_vocab_sidecar.h); the
  // draft model (draft-simple, auto, qspec) then scores only its first
  // draft_vocab_n tokens (model/vocabulary_subset.h). Empty: every token.
  std::string draft_vocab;
  int64_t draft_vocab_n = 32768;  // --spec-draft-vocab-n
  int ngram_n = 3;            // --spec-ngram-simple-size-n: the n-gram looked up (the last tokens)
  int ngram_m = 16;           // --spec-ngram-simple-size-m: tokens taken after its previous occurrence
  // Draft lengths chosen from the acceptance and pass costs seen (runtime/
  // draft_length.h), down to none where drafting does not pay; false
  // (--spec-fixed): always up to draft_max, as llama.cpp does.
  bool adaptive = true;
  bool operator==(const DecodeConfig&) const = default;
};

// KV-Compress (PAPERS.md card 3, kv/kv_compress.h): which KV blocks the hosts
// that keep a history (Session: run, chat, bench, longeval; Scheduler: serve)
// evict after a prompt and, under a budget, during decode. The perplexity
// evaluator refuses it: it scores each chunk in one forward pass, before any
// eviction could change a logit. runtime/kv_compressor.h turns this into the
// eviction spec.
struct KvCompressConfig {
  enum class Mode : uint8_t { Off, Metric, Window };
  Mode mode = Mode::Off;  // `kvcompress`: off, RATE (the attention metric), window[:RATE] (StreamingLLM)
  int rate = 0;           // keep 1/rate of a sequence's blocks after a prompt; 0: no rate (window: 4 without a budget)
  int64_t budget = 0;     // `kv_budget` (--kv-budget): positions per (layer, kv head) on average; 0: none
  bool operator==(const KvCompressConfig&) const = default;
};

// TEAL (PAPERS.md card 7, model/activation_sparsity.h): decode steps drop the
// projections' inputs below calibrated thresholds, and read only the weight
// columns of the inputs they keep (ops/sparse_matmul.h).
struct TealConfig {
  double sparsity = 0.0;  // `teal`: the model-wide share of inputs dropped; 0: off
  std::string file;       // --teal-file: the thresholds (empty: MODEL.teal.gguf next to the model)
  // Every row of every batch drops its small inputs, prompts included: what the
  // perplexity host sets to score each token as if TEAL had decoded it.
  bool all_rows = false;
  // A decode step keeping more than this share of a projection's inputs runs
  // the dense kernels on the masked input (`--teal-max-density`).
  double max_density = 0.5;
  // `teal_act=a7`: 4-bit weights multiply the kept inputs as 7-bit codes, two
  // per vpmaddubsw (kernels/sparse_columns.h InputPair), instead of as floats.
  bool paired = false;
  bool operator==(const TealConfig&) const = default;
};

struct EngineConfig {
  int n_threads = 0;                   // `threads`; 0 = one per core
  Isa isa = best_isa();                // `isa`: the highest kernel level any kernel may use
  DType k_type = DType::F16;           // `kv_k` (`kv` sets both): the KV store's key element type
  DType v_type = DType::F16;           // `kv_v` (`kv` sets both): its value element type
  bool kv_rotation = true;             // `kv_rot`: llama.cpp's Hadamard rotation of a block-quantized K/V
  // kv=cq2 or cq1 (kv/cq_codebook.h): the codebook file (`--kv-codebook`; empty:
  // MODEL.cq2.gguf next to the model) and the rows per head kept in F16 too (`--cq-window`).
  // K/V of two CQ types (kv=cq2/cq1): the keys' file is kv_codebook, the values' kv_codebook_v
  // (`--kv-codebook-v`; empty: the values' type's file next to the model).
  std::string kv_codebook;
  std::string kv_codebook_v;
  int64_t cq_window = 128;
  kernels::AttentionAlgo attention = kernels::AttentionAlgo::Exact;  // `attn`: with the KV types, picks the attention kernels
  MatmulOptions matmul = {};           // `matmul`: the weight kernels
  SamplerKind sampler = SamplerKind::Auto;  // `sampling`
  KvCompressConfig kv_compress;             // `kvcompress`, `kv_budget`
  DecodeConfig decode;                      // speculative decoding (host policy: Session)
  TealConfig teal;                          // `teal`: activation sparsity
};

// Whether an engine with `c` keeps a CQ cache, and so reads codebook sidecars
// (K and V both CQ types: a CQ type with another has no attention kernels).
inline bool uses_cq_cache(const EngineConfig& c) { return is_cq(c.k_type) && is_cq(c.v_type); }

}  // namespace kestrel
