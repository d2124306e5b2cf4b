#include "kernels/attention_set.h"

#include <array>
#include <iterator>

#include "core/error.h"
#include "platform/dispatch.h"

namespace kestrel::kernels {
namespace {

// The kernels are written for their element type; these give them the erased
// signature of the table.
template <class T, void (*Fn)(const KvBlocks<T>&, int64_t, int, const float*, float, float*)>
void row_for(const KvRows& kv, int64_t n, int d, const float* q, float scale, float* out) {
  Fn(typed_rows<T>(kv), n, d, q, scale, out);
}

template <class T, void (*Fn)(const KvBlocks<T>&, int, const TileRows&, float, float*)>
void tile_for(const KvRows& kv, int d, const TileRows& rows, float scale, float* scratch) {
  Fn(typed_rows<T>(kv), d, rows, scale, scratch);
}

struct Candidates {
  DType kv_type;
  AttentionAlgo algo;
  PerIsa<AttendRowFn> row;
  PerIsa<AttendTileFn> tile;
};

// No AVX2 versions yet: that level runs the scalar twins.
const Candidates kCandidates[] = {
    {DType::F16, AttentionAlgo::Exact,
     {row_for<uint16_t, ref::attend_f16>, nullptr, row_for<uint16_t, avx512::attend_f16>},
     {tile_for<uint16_t, ref::attend_tile_f16>, nullptr, tile_for<uint16_t, avx512::attend_tile_f16>}},
    {DType::F32, AttentionAlgo::Exact,
     {row_for<float, ref::attend_f32>, nullptr, row_for<float, avx512::attend_f32>},
     {tile_for<float, ref::attend_tile_f32>, nullptr, tile_for<float, avx512::attend_tile_f32>}},
};
constexpr size_t kPairs = std::size(kCandidates);

using Sets = std::array<std::array<AttentionKernelSet, kIsaLevels>, kPairs>;

Sets build_sets() {
  Sets sets{};
  for (size_t i = 0; i < kPairs; ++i)
    for (int level = 0; level < kIsaLevels; ++level) {
      const Candidates& c = kCandidates[i];
      const Isa isa = static_cast<Isa>(level);
      sets[i][static_cast<size_t>(level)] =
          AttentionKernelSet{c.kv_type, c.algo, isa, pick_for_isa(c.row, isa), pick_for_isa(c.tile, isa)};
    }
  return sets;
}

int pair_index(DType kv_type, AttentionAlgo algo) {
  for (size_t i = 0; i < kPairs; ++i)
    if (kCandidates[i].kv_type == kv_type && kCandidates[i].algo == algo) return static_cast<int>(i);
  return -1;
}

}  // namespace

std::string_view attention_algo_name(AttentionAlgo algo) {
  switch (algo) {
    case AttentionAlgo::Exact:
      return "exact";
  }
  return "?";
}

bool has_attention_kernels(DType kv_type, AttentionAlgo algo) { return pair_index(kv_type, algo) >= 0; }

std::string attention_pairs_text() {
  std::string out;
  for (const Candidates& c : kCandidates)
    out += (out.empty() ? "" : ", ") + std::string(dtype_name(c.kv_type)) + "+" + std::string(attention_algo_name(c.algo));
  return out;
}

const AttentionKernelSet& attention_kernel_set(DType kv_type, AttentionAlgo algo, Isa isa) {
  static const Sets sets = build_sets();
  const int i = pair_index(kv_type, algo);
  if (i < 0)
    fail("no attention kernels for a ", dtype_name(kv_type), " KV cache with attn=", attention_algo_name(algo),
         " (pairs with kernels: ", attention_pairs_text(), ")");
  return sets[static_cast<size_t>(i)][static_cast<size_t>(runnable_isa(isa))];
}

}  // namespace kestrel::kernels
