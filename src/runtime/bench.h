#pragma once
// Throughput benchmark in the manner of llama.cpp's llama-bench:
//  - a "pp<N>" test evaluates N random tokens from an empty cache (BOS first
//    when the vocab adds it), in batches of n_batch (one batch for N <= n_batch);
//  - a "tg<N>" test decodes N single tokens from an empty cache, each a random
//    id (BOS first when the vocab adds it), with logits for every token;
//  - with a depth D (llama-bench's -d), each run first fills the cache with D
//    random tokens, untimed, so that the test measures at that context depth;
//  - one warm-up run first (the whole prompt for pp, one token for tg), then
//    `reps` timed runs, each from a cleared cache; wall time by steady_clock;
//  - tokens/s of each run = N / seconds; reported as mean and sample standard
//    deviation over the runs.
//  - with n_parallel = B > 1 (`--parallel B`, llama-batched-bench's -npl), a
//    "tg<N> x<B>" test decodes N tokens in each of B sequences at once: one
//    forward pass of B rows per step (the batched weight GEMM), tokens/s
//    counting all B N tokens (llama-batched-bench's S_TG);
//  - with a text (BenchCase::text, `kestrel bench -f FILE`), a "tg<N>" test
//    instead generates N greedy tokens after that text with generate(), timing
//    the generation only: random ids give a drafter nothing to guess, so this
//    is how speculative decoding (BenchCase::decode, one row per policy) is
//    measured, with its acceptance rate and tokens per target pass.
// Peak resident memory is measured per test (VmHWM, reset before the test when
// the kernel allows), so it includes the mapped weights and the test's cache.
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "platform/cpu.h"
#include "switches/registry.h"

namespace kestrel {

// What llama-bench reports about a model.
struct BenchModelInfo {
  std::string filename;
  std::string type;        // "llama 135M Q4_1": architecture, size label, file type
  uint64_t size = 0;       // bytes of all tensors
  uint64_t n_params = 0;   // elements of all tensors
};
BenchModelInfo describe_model(const Model& model, const std::string& filename);

struct BenchCase {
  int n_prompt = 0;  // exactly one of n_prompt / n_gen is > 0
  int n_gen = 0;
  int n_depth = 0;  // tokens in the cache before each timed run (llama-bench's -d)
  int n_parallel = 1;  // tg tests: sequences decoding together, one row each per forward pass
  int n_batch = 2048;
  int reps = 5;
  bool warmup = true;
  uint32_t seed = 42;  // random token ids
  // The engine's settings (threads, kv, isa, matmul, ...) on top of `engine`
  // (the defaults, or a host's configuration with its sidecar paths).
  std::vector<SwitchSetting> switches;
  EngineConfig engine = {};
  // tg tests: the prompt the greedy generation follows (empty: random ids, as
  // llama-bench), and the decode policy (speculative decoding) it runs with.
  std::vector<int32_t> text;
  DecodeConfig decode;
  std::string name() const;  // "pp512" / "tg128" / "tg128 x16" / "tg128 @ d2048"
};

struct BenchResult {
  BenchModelInfo model;
  BenchCase test;
  EngineConfig engine;              // what the test ran with (resolved: threads counted)
  std::string test_time;            // RFC 3339, UTC, when the test started
  std::vector<uint64_t> samples_ns;  // one per rep
  std::vector<double> samples_ts;    // tokens/s per rep
  double avg_ts = 0.0, stddev_ts = 0.0;
  uint64_t avg_ns = 0, stddev_ns = 0;
  size_t peak_rss_bytes = 0;
  // Speculative decoding, summed over the timed runs (0 for plain decoding).
  int64_t drafted = 0, accepted = 0, target_passes = 0, generated = 0;
  // TEAL: the share of the projections' weights the timed decode steps skipped
  // (ops/sparse_matmul.h SparsityCounter); -1 with teal=off.
  double teal_sparsity = -1.0;
};

// Called with a short description before each phase ("warm-up", "rep 2/5").
using BenchProgressFn = std::function<void(const std::string& what)>;

// Runs one test. Throws kestrel::Error for an invalid case (no tokens, reps < 1,
// an ISA the CPU lacks).
BenchResult run_bench(const Model& model, const BenchModelInfo& info, const BenchCase& c,
                      const BenchProgressFn& progress = {});

// The cases of a grid, in llama-bench's order: for each thread count, KV type
// and ISA, the pp tests then the tg tests (sizes of 0 are skipped). Each of
// those becomes a switch setting of its case (threads=, kv=, isa=).
struct BenchGrid {
  std::vector<int> n_prompt{512};
  std::vector<int> n_gen{128};
  std::vector<int> n_depth{0};
  std::vector<int> n_parallel{1};  // tg tests only
  std::vector<int> n_threads{0};  // 0: the engine's default (one per core)
  std::vector<std::string> kv_types{};  // `kv` values (q8_0, cq2/cq1, ...); empty: the engine's default (f16)
  std::vector<Isa> isas{};        // empty: the engine's default (the best this CPU runs)
  int n_batch = 2048;
  int reps = 5;
  bool warmup = true;
  std::vector<SwitchSetting> switches;  // the same for every case
  // tg tests: generate after this text (BenchCase::text), once per decode
  // policy (its settings from `decode`); empty: plain decoding only.
  std::vector<int32_t> text;
  std::vector<DecodePolicy> policies;
  DecodeConfig decode;
};
std::vector<BenchCase> bench_cases(const BenchGrid& grid);

// Output as llama-bench prints it: a markdown table, a JSON array of objects,
// or CSV with a header row; one row per test, printed as each test finishes.
enum class BenchFormat { Markdown, Json, Csv };
BenchFormat parse_bench_format(std::string_view name);  // "md", "json", "csv"

class BenchPrinter {
 public:
  virtual ~BenchPrinter() = default;
  virtual void header() {}
  virtual void row(const BenchResult& r) = 0;
  virtual void footer() {}
};
// The grid chooses optional markdown columns (the KV type when it is not the
// default f16 or varies).
std::unique_ptr<BenchPrinter> make_bench_printer(BenchFormat format, std::ostream& out, const BenchGrid& grid);


}  // namespace kestrel
