// The whole sampling step (Sampler::sample: size check, penalties off, filters,
// draw) on one logit row, sort-based vs sorting-free.
//   sample/<kind>/<n_vocab>: llama.cpp's default chain (temperature 0.8, top-k
//     40, top-p 0.95, min-p 0.05), the path every generated token takes.
//   sample_topp/<kind>/<n_vocab>: top-p 0.95 alone at temperature 1, the
//     filter that needs the whole vocabulary (full sort vs exp over all).
//   sortfree_isa/<isa>/<n_vocab>: the chain on each kernel level the host runs.
// Rows are shaped like a small LM's output (SmolLM2's logits: a Gaussian bulk
// of sd 3-4 and a head 5-7 sd above it, a few to a few dozen tokens within 3
// nats of the maximum), fixed seed. One row per benchmark, so it stays in L2
// as the logits of the output matmul do.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "platform/cpu.h"
#include "sampling/sampler.h"
#include "sampling/sortfree.h"

namespace kestrel {
namespace {

const int kVocabs[] = {32000, 49152, 128256, 151936};

std::vector<float> lm_like_logits(int n_vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<float> l(static_cast<size_t>(n_vocab));
  for (auto& x : l) x = static_cast<float>(3.5 * g(rng) - 2.0);
  for (int i = 0; i < 24; ++i) l[rng() % l.size()] = static_cast<float>(18.0 - 1.2 * std::sqrt(i) + 0.3 * g(rng));
  return l;
}

SamplingParams chain(SamplerKind kind) {
  SamplingParams p;  // llama.cpp's defaults: 0.8, 40, 0.95, 0.05
  p.seed = 42;
  p.kind = kind;
  return p;
}

void run(benchmark::State& state, const SamplingParams& p, int n_vocab) {
  const auto logits = lm_like_logits(n_vocab, 7);
  Sampler s(p, n_vocab);
  for (auto _ : state) benchmark::DoNotOptimize(s.sample(logits));
  state.SetItemsProcessed(state.iterations());
}

void register_all() {
  for (SamplerKind kind : {SamplerKind::Sort, SamplerKind::SortFree}) {
    const std::string name(sampler_kind_name(kind));
    for (int v : kVocabs)
      benchmark::RegisterBenchmark(("sample/" + name + "/" + std::to_string(v)).c_str(),
                                   [kind, v](benchmark::State& st) { run(st, chain(kind), v); })
          ->Unit(benchmark::kMicrosecond);
  }
  for (SamplerKind kind : {SamplerKind::Sort, SamplerKind::SortFree}) {
    const std::string name(sampler_kind_name(kind));
    for (int v : kVocabs)
      benchmark::RegisterBenchmark(("sample_topp/" + name + "/" + std::to_string(v)).c_str(),
                                   [kind, v](benchmark::State& st) {
                                     SamplingParams p = chain(kind);
                                     p.temperature = 1.0f;
                                     p.top_k = 0;
                                     p.min_p = 0.0f;
                                     run(st, p, v);
                                   })
          ->Unit(benchmark::kMicrosecond);
  }
  for (Isa isa : supported_isas())
    for (int v : kVocabs)
      benchmark::RegisterBenchmark(
          ("sortfree_isa/" + std::string(isa_name(isa)) + "/" + std::to_string(v)).c_str(),
          [isa, v](benchmark::State& st) {
            const auto logits = lm_like_logits(v, 7);
            const SamplingParams p = chain(SamplerKind::SortFree);
            SortFreeSampler s(isa);
            std::mt19937 rng(42);
            for (auto _ : st) {
              s.prepare(logits, p);
              benchmark::DoNotOptimize(s.draw(rng));
            }
            st.SetItemsProcessed(st.iterations());
          })
          ->Unit(benchmark::kMicrosecond);
}

const bool kRegistered = (register_all(), true);

}  // namespace
}  // namespace kestrel
