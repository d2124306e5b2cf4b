#include "runtime/bench.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <optional>
#include <random>
#include <sstream>

#include "core/error.h"
#include "gguf/gguf.h"
#include "runtime/engine_core.h"
#include "runtime/memory.h"
#include "runtime/session.h"
#include "sampling/sampler.h"
#include "switches/registry.h"

namespace kestrel {
namespace {

// llama.cpp's names for general.file_type (llama_ftype) values.
std::string file_type_name(const gguf::File& f) {
  static const std::map<uint64_t, std::string> names = {
      {0, "all F32"},        {1, "F16"},           {2, "Q4_0"},          {3, "Q4_1"},          {7, "Q8_0"},
      {8, "Q5_0"},           {9, "Q5_1"},          {10, "Q2_K - Medium"}, {11, "Q3_K - Small"}, {12, "Q3_K - Medium"},
      {13, "Q3_K - Large"},  {14, "Q4_K - Small"}, {15, "Q4_K - Medium"}, {16, "Q5_K - Small"}, {17, "Q5_K - Medium"},
      {18, "Q6_K"},          {32, "BF16"},
  };
  if (auto ft = f.get_u64("general.file_type")) {
    auto it = names.find(*ft);
    if (it != names.end()) return it->second;
  }
  // Otherwise the type holding the most bytes.
  std::map<DType, size_t> bytes;
  for (const auto& t : f.tensors()) bytes[t.type] += t.nbytes;
  DType best = DType::F32;
  size_t most = 0;
  for (const auto& [type, n] : bytes)
    if (n > most) most = n, best = type;
  std::string name(dtype_name(best));
  for (auto& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return name;
}

std::string size_label(const gguf::File& f, uint64_t n_params) {
  if (auto label = f.get_string("general.size_label"); label && !label->empty()) return *label;
  std::ostringstream os;
  os.setf(std::ios::fixed);
  if (n_params < 1000ull * 1000 * 1000) {
    os.precision(0);
    os << n_params / 1e6 << "M";
  } else {
    os.precision(1);
    os << n_params / 1e9 << "B";
  }
  return os.str();
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Sample mean and standard deviation (n - 1), as llama-bench reports them.
template <typename T>
std::pair<double, double> mean_stddev(const std::vector<T>& v) {
  if (v.empty()) return {0.0, 0.0};
  double sum = 0.0;
  for (T x : v) sum += static_cast<double>(x);
  const double mean = sum / v.size();
  if (v.size() < 2) return {mean, 0.0};
  double ss = 0.0;
  for (T x : v) ss += (static_cast<double>(x) - mean) * (static_cast<double>(x) - mean);
  return {mean, std::sqrt(ss / (v.size() - 1))};
}

}  // namespace

BenchModelInfo describe_model(const Model& model, const std::string& filename) {
  BenchModelInfo info;
  info.filename = filename;
  for (const auto& t : model.file().tensors()) {
    info.size += t.nbytes;
    info.n_params += static_cast<uint64_t>(t.n_elements());
  }
  info.type = model.config().arch + " " + size_label(model.file(), info.n_params) + " " + file_type_name(model.file());
  return info;
}

std::string BenchCase::name() const {
  std::string s;
  if (n_prompt > 0 && n_gen > 0) s = "pp" + std::to_string(n_prompt) + "+tg" + std::to_string(n_gen);
  else s = n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
  if (n_parallel > 1) s += " x" + std::to_string(n_parallel);
  if (n_depth > 0) s += " @ d" + std::to_string(n_depth);  // llama-bench's spelling
  if (!text.empty() && n_gen > 0)
    s += decode.policy == DecodePolicy::Plain ? " text" : " " + std::string(decode_policy_name(decode.policy));
  return s;
}

namespace {

// One timed run of n_tokens tokens.
void add_sample(BenchResult& r, std::chrono::steady_clock::duration d, int64_t n_tokens) {
  const auto ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  r.samples_ns.push_back(std::max<uint64_t>(ns, 1));
  r.samples_ts.push_back(1e9 * static_cast<double>(n_tokens) / static_cast<double>(r.samples_ns.back()));
}

// Mean and standard deviation of the runs, and the test's peak memory.
void summarize(BenchResult& r) {
  const auto [avg_ns, sd_ns] = mean_stddev(r.samples_ns);
  const auto [avg_ts, sd_ts] = mean_stddev(r.samples_ts);
  r.avg_ns = static_cast<uint64_t>(avg_ns);
  r.stddev_ns = static_cast<uint64_t>(sd_ns);
  r.avg_ts = avg_ts;
  r.stddev_ts = sd_ts;
  r.peak_rss_bytes = peak_rss_bytes();
}

// n_parallel sequences decoding together: each step one forward pass of one
// random token per sequence, all at the same position (after n_depth random
// tokens per sequence, untimed). Returns the time of the n_gen steps.
std::chrono::steady_clock::duration run_parallel_gen(EngineCore& core, const BenchCase& c, std::mt19937& rng) {
  const int32_t n_vocab = core.model().config().n_vocab;
  std::uniform_int_distribution<int32_t> any_token(0, n_vocab - 1);
  const int B = c.n_parallel;
  core.cache().clear();
  std::vector<float> logits;
  if (c.n_depth > 0) {
    Batch fill;
    for (int s = 0; s < B; ++s)
      for (int i = 0; i < c.n_depth; ++i) fill.add(any_token(rng), i, s, false);
    logits.resize(static_cast<size_t>(n_vocab));
    core.forward(fill, logits.data());
  }
  logits.resize(static_cast<size_t>(B) * static_cast<size_t>(n_vocab));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < c.n_gen; ++i) {
    Batch step;
    for (int s = 0; s < B; ++s) step.add(any_token(rng), c.n_depth + i, s, true, true);
    core.forward(step, logits.data());
  }
  return std::chrono::steady_clock::now() - t0;
}

}  // namespace

BenchResult run_bench(const Model& model, const BenchModelInfo& info, const BenchCase& c,
                      const BenchProgressFn& progress) {
  if (c.n_prompt < 0 || c.n_gen < 0 || (c.n_prompt > 0) == (c.n_gen > 0))
    fail("bench: a test has either prompt tokens or generated tokens (got pp ", c.n_prompt, ", tg ", c.n_gen, ")");
  if (c.reps < 1) fail("bench: repetitions must be at least 1, got ", c.reps);
  if (c.n_batch < 1) fail("bench: batch size must be positive, got ", c.n_batch);
  if (c.n_depth < 0) fail("bench: depth must not be negative, got ", c.n_depth);
  const bool from_text = !c.text.empty() && c.n_gen > 0;
  if (c.decode.policy != DecodePolicy::Plain && !from_text)
    fail("bench: speculative decoding (", decode_policy_name(c.decode.policy),
         ") needs a text to continue (-f FILE): random ids give a drafter nothing to guess");
  if (from_text && c.n_depth > 0) fail("bench: a generation after a text (-f) takes no depth (-d)");
  if (c.n_parallel < 1) fail("bench: parallel sequences must be at least 1, got ", c.n_parallel);
  if (c.n_parallel > 1 && (c.n_gen == 0 || from_text))
    fail("bench: parallel sequences (", c.n_parallel, ") decode random tokens: tg tests without -f only");

  BenchResult r;
  r.model = info;
  r.test = c;
  r.test_time = utc_now();
  // Per-test peak where the kernel allows it; otherwise the process-wide peak.
  reset_peak_rss();

  SessionOptions so;
  so.n_ctx = c.n_depth + c.n_prompt + c.n_gen;
  if (from_text) so.n_ctx = static_cast<int64_t>(c.text.size()) + c.n_gen + c.decode.draft_max + 1;
  so.n_batch = c.n_batch;
  so.engine = c.engine;
  apply_switches(so.engine, c.switches);
  so.engine.decode = c.decode;
  // With a sampling switch, tg draws each next token from the logits with
  // llama.cpp's default chain (temp 0.8, top-k 40, top-p 0.95, min-p 0.05) and the
  // chosen sampler, so the sampler's cost is inside the measured time. Without
  // one, tg feeds random ids, as llama-bench does.
  bool sample_tokens = false;
  for (const auto& s : c.switches) sample_tokens = sample_tokens || s.name == "sampling";
  SamplingParams sampling;
  sampling.seed = c.seed;
  if (c.n_parallel > 1) {
    EngineCore core(model, so.engine, model.kv_shape(c.n_depth + c.n_gen, c.n_parallel));
    r.engine = core.config();
    std::mt19937 rng(c.seed);
    if (c.warmup) {
      if (progress) progress("warm-up");
      BenchCase one = c;
      one.n_gen = 1;
      run_parallel_gen(core, one, rng);
    }
    for (int rep = 0; rep < c.reps; ++rep) {
      if (progress) progress("rep " + std::to_string(rep + 1) + "/" + std::to_string(c.reps));
      add_sample(r, run_parallel_gen(core, c, rng), int64_t{c.n_gen} * c.n_parallel);
    }
    summarize(r);
    return r;
  }
  Session session(model, so);
  r.engine = session.config();
  sampling.kind = r.engine.sampler;

  const Tokenizer& tok = model.tokenizer();
  const int32_t n_vocab = model.config().n_vocab;
  const int32_t bos = tok.spec().add_bos && tok.bos() >= 0 ? tok.bos() : -1;
  std::mt19937 rng(c.seed);
  std::uniform_int_distribution<int32_t> any_token(0, n_vocab - 1);
  auto first_token = [&] { return bos >= 0 ? bos : any_token(rng); };
  // The context the timed tokens follow (BOS first); the test's own first
  // token is then a random id, not a second BOS.
  std::vector<int32_t> depth_ids(static_cast<size_t>(c.n_depth));
  for (int i = 0; i < c.n_depth; ++i) depth_ids[static_cast<size_t>(i)] = i == 0 ? first_token() : any_token(rng);
  auto reset = [&] {
    session.clear();
    if (!depth_ids.empty()) session.append(depth_ids);
  };
  auto test_first = [&] { return c.n_depth > 0 ? any_token(rng) : first_token(); };

  auto run_prompt = [&](int n) {
    std::vector<int32_t> ids(n);
    ids[0] = test_first();
    for (int i = 1; i < n; ++i) ids[i] = any_token(rng);
    reset();
    const auto t0 = std::chrono::steady_clock::now();
    session.append(ids);
    return std::chrono::steady_clock::now() - t0;
  };
  // After a text: the prompt evaluated untimed (generate() times it apart),
  // then n greedy tokens however the decode policy makes them.
  auto run_text_gen = [&](int n) {
    session.clear();
    GenerateOptions g;
    g.max_tokens = n;
    g.sampling.temperature = 0.0f;
    g.stop_at_eog = false;
    const GenerateResult out = generate(session, c.text, g);
    r.drafted += out.drafted;
    r.accepted += out.accepted;
    r.target_passes += out.target_passes;
    r.generated += static_cast<int64_t>(out.tokens.size());
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(out.generate_seconds));
  };
  auto run_gen = [&](int n) {
    if (from_text) return run_text_gen(n);
    reset();
    Sampler sampler(sampling, n_vocab);
    int32_t next = test_first();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      const auto logits = session.decode(next);
      next = sample_tokens ? sampler.sample(logits) : any_token(rng);
    }
    return std::chrono::steady_clock::now() - t0;
  };

  if (c.warmup) {
    if (progress) progress("warm-up");
    if (c.n_prompt > 0) run_prompt(c.n_prompt);
    else
      run_gen(from_text ? c.n_gen : 1);
    r.drafted = r.accepted = r.target_passes = r.generated = 0;
  }
  const int n_tokens = c.n_prompt + c.n_gen;
  const ActivationSparsity* teal = session.sparsity();
  const SparsityCounter teal_before = teal ? teal->counter : SparsityCounter{};
  for (int rep = 0; rep < c.reps; ++rep) {
    if (progress) progress("rep " + std::to_string(rep + 1) + "/" + std::to_string(c.reps));
    add_sample(r, c.n_prompt > 0 ? run_prompt(c.n_prompt) : run_gen(c.n_gen), n_tokens);
  }
  if (teal) {
    const auto total = teal->counter.total.load() - teal_before.total.load();
    const auto skipped = teal->counter.skipped.load() - teal_before.skipped.load();
    r.teal_sparsity = total ? static_cast<double>(skipped) / static_cast<double>(total) : 0.0;
  }
  summarize(r);
  return r;
}

std::vector<BenchCase> bench_cases(const BenchGrid& g) {
  std::vector<BenchCase> out;
  // One spelling: the grid's axes become switch settings, parsed (and checked)
  // like --switch values.
  // An empty axis is one case with the engine's default.
  auto axis = [](const auto& values) {
    using T = typename std::decay_t<decltype(values)>::value_type;
    return values.empty() ? std::vector<std::optional<T>>{std::nullopt}
                          : std::vector<std::optional<T>>(values.begin(), values.end());
  };
  for (int threads : g.n_threads)
    for (const std::optional<std::string>& kv : axis(g.kv_types))
      for (const std::optional<Isa>& isa : axis(g.isas)) {
        if (threads < 0) fail("bench: thread count must not be negative, got ", threads);
        BenchCase base;
        base.n_batch = g.n_batch;
        base.reps = g.reps;
        base.warmup = g.warmup;
        if (threads > 0) base.switches.push_back(parse_switch("threads=" + std::to_string(threads)));
        if (kv) base.switches.push_back(parse_switch("kv=" + *kv));
        if (isa) base.switches.push_back(parse_switch("isa=" + std::string(isa_name(*isa))));
        base.switches.insert(base.switches.end(), g.switches.begin(), g.switches.end());
        for (int depth : g.n_depth) {
          if (depth < 0) fail("bench: depth must not be negative, got ", depth);
          for (int p : g.n_prompt) {
            if (p <= 0) continue;
            BenchCase c = base;
            c.n_prompt = p;
            c.n_depth = depth;
            out.push_back(c);
          }
          for (int n : g.n_gen) {
            if (n <= 0) continue;
            for (const std::optional<DecodePolicy>& policy : axis(g.policies))
              for (int parallel : g.n_parallel) {
                BenchCase c = base;
                c.n_gen = n;
                c.n_depth = depth;
                c.n_parallel = parallel;
                c.text = g.text;
                c.decode = g.decode;
                c.decode.policy = policy.value_or(DecodePolicy::Plain);
                out.push_back(c);
              }
          }
        }
      }
  return out;
}

}  // namespace kestrel
