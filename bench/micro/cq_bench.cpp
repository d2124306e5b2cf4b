// CQ attention kernel microbenchmarks (kernels/cq_kernels.h), per ISA the host runs:
//  cq_row/<spec>/<isa>/d<d>/n<keys>: the parts of one query row over n keys of
//    codes, as a decode step would run them: the score table, the n scores, the
//    buckets of n probabilities, the output from the buckets. Compare with
//    attn_row/exact/f16/<isa>/d<d>/n<keys> (attention_bench.cpp), which also
//    does the softmax. bytes/s counts the code bytes read (K and V).
//  cq_qk/... and cq_pv/...: the two halves alone (score table and scores;
//    buckets and output).
// Values are random (the kernels' speed does not depend on them).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/fp16.h"
#include "kernels/cq_kernels.h"
#include "kv/cq_codebook.h"
#include "platform/cpu.h"

namespace kestrel::kernels {
namespace {

enum class Part { Row, Qk, Pv };

void bench_cq(benchmark::State& state, Part part, CqSpec spec, Isa isa, int d, int64_t n) {
  const CqKernels& k = cq_kernels(isa);
  const int c = spec.channels_per_group, groups = spec.groups(d), codes = spec.n_codes();
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint16_t> k_book(static_cast<size_t>(d) * codes), v_book(k_book.size());  // F16, as the cache holds
  std::vector<float> q(d), out(d);
  for (uint16_t& x : k_book) x = f32_to_fp16(nd(rng));
  for (uint16_t& x : v_book) x = f32_to_fp16(nd(rng));
  for (float& x : q) x = nd(rng);
  std::vector<uint8_t> k_codes(static_cast<size_t>(n) * groups), v_codes(k_codes.size());
  for (uint8_t& x : k_codes) x = static_cast<uint8_t>(rng());
  for (uint8_t& x : v_codes) x = static_cast<uint8_t>(rng());
  std::vector<float> table(static_cast<size_t>(groups) * codes), scores(n), buckets(table.size());
  for (float& x : scores) x = nd(rng);
  for (auto _ : state) {
    if (part != Part::Pv) {
      k.score_table(q.data(), k_book.data(), d, c, codes, table.data());
      k.scores(table.data(), k_codes.data(), n, groups, codes, scores.data());
    }
    if (part != Part::Qk) {
      std::fill(buckets.begin(), buckets.end(), 0.0f);
      // The scores stand in for the probabilities: the softmax is not what is measured.
      k.add_buckets(scores.data(), v_codes.data(), n, groups, codes, buckets.data());
      k.buckets_out(buckets.data(), v_book.data(), d, c, codes, out.data());
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(scores.data());
  }
  state.SetBytesProcessed(state.iterations() * (part == Part::Row ? 2 : 1) * n * groups);
}

int register_all() {
  for (Isa isa : supported_isas())
    for (CqSpec spec : {kCq2, kCq1})
      for (int d : {64, 128})
        for (int64_t n : {int64_t{512}, int64_t{2048}, int64_t{8192}}) {
          const std::string tag = cq_spec_name(spec) + "/" + std::string(isa_name(isa)) + "/d" + std::to_string(d) +
                                  "/n" + std::to_string(n);
          for (auto [part, name] : {std::pair{Part::Row, "cq_row/"}, {Part::Qk, "cq_qk/"}, {Part::Pv, "cq_pv/"}})
            benchmark::RegisterBenchmark((name + tag).c_str(), bench_cq, part, spec, isa, d, n)
                ->Unit(benchmark::kMicrosecond);
        }
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace kestrel::kernels
