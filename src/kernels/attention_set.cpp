#include "kernels/attention_set.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kernels/attention_int8.h"
#include "kernels/attention_quant.h"
#include "kernels/attention_sage.h"
#include "kernels/avx2/attention_avx2.h"
#include "kernels/cq_attention.h"
#include "kernels/hadamard.h"
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

template <class T, void (*Fn)(const KvBlocks<T>&, int64_t, int, const float* const*, int, float, float* const*)>
void group_for(const KvRows& kv, int64_t n, int d, const float* const* q, int nq, float scale, float* const* out) {
  Fn(typed_rows<T>(kv), n, d, q, nq, scale, out);
}

// A group as the row kernel once per head (the scalar twin of a group kernel).
template <class T, void (*Row)(const KvBlocks<T>&, int64_t, int, const float*, float, float*)>
void group_of_rows(const KvRows& kv, int64_t n, int d, const float* const* q, int nq, float scale, float* const* out) {
  for (int h = 0; h < nq; ++h) Row(typed_rows<T>(kv), n, d, q[h], scale, out[h]);
}

// q as the rotated keys see it: q itself, or its rotated copy in `buf` [d].
inline const float* rotated_q(const KvRows& kv, const float* q, int d, float* buf) {
  if (!kv.k_rot) return q;
  std::copy(q, q + d, buf);
  hadamard_chunks(buf, d, kv.k_rot);
  return buf;
}

// For every other (K, V) pair of KV types: the format functions are resolved
// at the candidate's own level, so the scalar entry is the pure scalar twin.
// A rotated cache (kernels/hadamard.h): q is rotated like K, the output
// rotated back like V; the kernels themselves see plain rows.
template <Isa I, void (*Fn)(const KvQuantBlocks&, int64_t, int, const float*, float, float*)>
void row_quant(const KvRows& kv, int64_t n, int d, const float* q, float scale, float* out) {
  float qr[512];
  Fn(quant_rows(kv, I), n, d, rotated_q(kv, q, d, qr), scale, out);
  if (kv.v_rot) hadamard_chunks(out, d, kv.v_rot);
}

// The tiles see q as the row kernels' integer dot products do: rounded to K's
// vec_dot type (llama.cpp runs its one-row kernel for a quantized cache at any
// batch size), then widened back to F32, so a score is the same sum of
// dequantized products, summed in the tile's order.
template <Isa I, void (*Fn)(const KvQuantBlocks&, int, const TileRows&, float, float*)>
void tile_quant(const KvRows& kv, int d, const TileRows& rows, float scale, float* scratch) {
  thread_local std::vector<float> qs;
  alignas(64) uint8_t qq[512 * sizeof(float)];
  const QuantKernels& vd = quant_kernels(quant_kernels(kv.k_type, I).vec_dot_type, I);
  qs.resize(static_cast<size_t>(rows.n) * d);
  const float* q[kMaxTileRows];
  for (int r = 0; r < rows.n; ++r) {
    float* x = qs.data() + static_cast<size_t>(r) * d;
    std::copy(rows.q[r], rows.q[r] + d, x);
    if (kv.k_rot) hadamard_chunks(x, d, kv.k_rot);
    vd.quantize_row(x, qq, d);
    vd.dequantize_row(qq, x, d);
    q[r] = x;
  }
  Fn(quant_rows(kv, I), d, TileRows{q, rows.out, rows.n_visible, rows.n}, scale, scratch);
  if (kv.v_rot)
    for (int r = 0; r < rows.n; ++r) hadamard_chunks(rows.out[r], d, kv.v_rot);
}

// A GQA group through the quant kernels: each q rotated like K, each output
// rotated back like V, as row_quant does for one row.
template <Isa I, void (*Fn)(const KvQuantBlocks&, int64_t, int, const float* const*, int, float, float* const*)>
void group_quant(const KvRows& kv, int64_t n, int d, const float* const* q, int nq, float scale, float* const* out) {
  thread_local std::vector<float> qr;
  qr.resize(static_cast<size_t>(nq) * d);
  const float* qp[kMaxGroup];
  for (int h = 0; h < nq; ++h) qp[h] = rotated_q(kv, q[h], d, qr.data() + static_cast<size_t>(h) * d);
  Fn(quant_rows(kv, I), n, d, qp, nq, scale, out);
  if (kv.v_rot)
    for (int h = 0; h < nq; ++h) hadamard_chunks(out[h], d, kv.v_rot);
}

// The scalar twin of a group: the row twin once per head.
template <void (*Row)(const KvQuantBlocks&, int64_t, int, const float*, float, float*)>
void rows_as_group(const KvQuantBlocks& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                   float* const* out) {
  for (int h = 0; h < nq; ++h) Row(kv, n, d, q[h], scale, out[h]);
}

// CQ: decode rows with the level's CqKernels. Prompt tiles decode the rows
// they see to F32 once (kernels/cq_attention.h decode_cq_rows) and run the F32
// tile kernel of their level over them, as one contiguous block.
template <Isa I>
void row_cq(const KvRows& kv, int64_t n, int d, const float* q, float scale, float* out) {
  attend_cq(cq_kernels(I), kv, n, d, q, scale, out);
}
template <void (*Fn)(const KvBlocks<float>&, int, const TileRows&, float, float*)>
void tile_cq(const KvRows& kv, int d, const TileRows& rows, float scale, float* scratch) {
  const int64_t n = *std::max_element(rows.n_visible, rows.n_visible + rows.n);
  thread_local std::vector<float> k, v;
  k.resize(static_cast<size_t>(n) * d);
  v.resize(k.size());
  decode_cq_rows(kv, n, d, k.data(), v.data());
  Fn(contiguous_rows(k.data(), v.data(), n), d, rows, scale, scratch);
}

struct Candidates {
  DType k_type;
  DType v_type;
  AttentionAlgo algo;
  PerIsa<AttendRowFn> row;
  PerIsa<AttendTileFn> tile;
  PerIsa<AttendGroupFn> group = {};  // none: the rows, one call per head
};

// The twin's signature without its `smooth` argument (smoothing on).
void sage_twin(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  ref::attend_sage_f16(kv, n, d, q, scale, out);
}

// Per Isa level {Scalar, Avx2, Avx512}; a missing entry falls to the level below.
std::vector<Candidates> make_candidates() {
  std::vector<Candidates> c = {
      // Decode of a GQA group: the AVX2 group kernel streams the cache once
      // for the group's heads, each with the row kernel's bits. The row
      // kernels of every level give the twin's bits (tests/unit/kv/
      // attention_test.cpp), so the AVX-512 level takes the AVX2 group too.
      {DType::F16,
       DType::F16,
       AttentionAlgo::Exact,
       {row_for<uint16_t, ref::attend_f16>, row_for<uint16_t, avx2::attend_f16>, row_for<uint16_t, avx512::attend_f16>},
       {tile_for<uint16_t, ref::attend_tile_f16>, tile_for<uint16_t, avx2::attend_tile_f16>,
        tile_for<uint16_t, avx512::attend_tile_f16>},
       {group_of_rows<uint16_t, ref::attend_f16>, group_for<uint16_t, avx2::attend_f16_group>, nullptr}},
      {DType::F32,
       DType::F32,
       AttentionAlgo::Exact,
       {row_for<float, ref::attend_f32>, row_for<float, avx2::attend_f32>, row_for<float, avx512::attend_f32>},
       {tile_for<float, ref::attend_tile_f32>, tile_for<float, avx2::attend_tile_f32>,
        tile_for<float, avx512::attend_tile_f32>},
       {group_of_rows<float, ref::attend_f32>, group_for<float, avx2::attend_f32_group>, nullptr}},
      // sage and int8 read the F16 cache and quantize K (and V) per KV block on
      // the fly (kernels/attention_sage.h). AVX-512: VNNI prompt tiles; its
      // rows run the AVX2 kernels.
      {DType::F16,
       DType::F16,
       AttentionAlgo::Sage,
       {row_for<uint16_t, sage_twin>, row_for<uint16_t, avx2::attend_sage_f16>, nullptr},
       {tile_for<uint16_t, ref::attend_tile_sage_f16>, tile_for<uint16_t, avx2::attend_tile_sage_f16>,
        tile_for<uint16_t, avx512::attend_tile_sage_f16>}},
      {DType::F16,
       DType::F16,
       AttentionAlgo::Int8,
       {row_for<uint16_t, ref::attend_int8_f16>, row_for<uint16_t, avx2::attend_int8_f16>, nullptr},
       {tile_for<uint16_t, ref::attend_tile_int8_f16>, tile_for<uint16_t, avx2::attend_tile_int8_f16>,
        tile_for<uint16_t, avx512::attend_tile_int8_f16>}},
  };
  // Decode over a quantized K: the AVX-512 level runs the AVX2 rows and groups
  // (with the AVX2 format kernels, so a group keeps its row's bits). On
  // Sapphire Rapids they were the faster ones (bench/micro attention_bench,
  // CPU time): rows over 8192 keys, d 64, q8_0 134 vs 181 us, q4_0 153 vs 201;
  // a group of 3 heads over 4096 q8_0 keys 132 vs 271 (the AVX-512 row kernel
  // once per head); at d 128 the rows were even (286 vs 276, q4_0 253 vs 323).
  const PerIsa<AttendRowFn> quant_row = {row_quant<Isa::Scalar, ref::attend_quant>,
                                         row_quant<Isa::Avx2, avx2::attend_quant>, nullptr};
  const PerIsa<AttendTileFn> quant_tile = {tile_quant<Isa::Scalar, ref::attend_tile_quant>,
                                           tile_quant<Isa::Avx2, avx2::attend_tile_quant>,
                                           tile_quant<Isa::Avx512, avx512::attend_tile_quant>};
  // Q8_0 keys also decode a GQA group in one pass (avx2::attend_quant_group).
  const PerIsa<AttendGroupFn> quant_group = {group_quant<Isa::Scalar, rows_as_group<ref::attend_quant>>,
                                             group_quant<Isa::Avx2, avx2::attend_quant_group>, nullptr};
  for (DType k : kv_types())
    for (DType v : kv_types()) {
      if (k == v && (k == DType::F16 || k == DType::F32)) continue;
      if (k == DType::Q8_0)
        c.push_back({k, v, AttentionAlgo::Exact, quant_row, quant_tile, quant_group});
      else
        c.push_back({k, v, AttentionAlgo::Exact, quant_row, quant_tile});
    }
  // sage over a block-quantized K: the cache stores K smoothed (kv/kv_cache.h)
  // and the kernels add q . m_b back per block (they see the means in the view).
  // Decode: the integer scores with the block-wise polynomial softmax
  // (attention_quant.h attend_sage_quant); prompt tiles: the quant tiles. No
  // AVX-512 row kernel: that level runs the AVX2 one.
  const PerIsa<AttendRowFn> sage_row = {row_quant<Isa::Scalar, ref::attend_sage_quant>,
                                        row_quant<Isa::Avx2, avx2::attend_sage_quant>, nullptr};
  const PerIsa<AttendGroupFn> sage_group = {group_quant<Isa::Scalar, rows_as_group<ref::attend_sage_quant>>,
                                            group_quant<Isa::Avx2, avx2::attend_sage_quant_group>, nullptr};
  for (DType k : kv_types())
    if (smooths_keys(k, AttentionAlgo::Sage))
      for (DType v : kv_types()) c.push_back({k, v, AttentionAlgo::Sage, sage_row, quant_tile, sage_group});
  // int8 over INT8 K and V in the cache (Q8_0, K smoothed as for sage): the
  // sage scores and softmax, P.V in integers (attention_quant.h
  // attend_int8_quant). Prompt tiles: the quant tiles.
  const PerIsa<AttendRowFn> int8_row = {row_quant<Isa::Scalar, ref::attend_int8_quant>,
                                        row_quant<Isa::Avx2, avx2::attend_int8_quant>, nullptr};
  const PerIsa<AttendGroupFn> int8_group = {group_quant<Isa::Scalar, rows_as_group<ref::attend_int8_quant>>,
                                            group_quant<Isa::Avx2, avx2::attend_int8_quant_group>, nullptr};
  c.push_back({DType::Q8_0, DType::Q8_0, AttentionAlgo::Int8, int8_row, quant_tile, int8_group});
  // CQ (kernels/cq_attention.h): K and V each of a CQ type (the codes say
  // their own group size), exact softmax. The AVX-512 level runs the AVX2
  // CqKernels (cq_kernels resolves it).
  for (DType k : cq_kv_types())
    for (DType v : cq_kv_types())
      c.push_back({k,
                   v,
                   AttentionAlgo::Exact,
                   {row_cq<Isa::Scalar>, row_cq<Isa::Avx2>, nullptr},
                   {tile_cq<ref::attend_tile_f32>, tile_cq<avx2::attend_tile_f32>, tile_cq<avx512::attend_tile_f32>}});
  return c;
}

const std::vector<Candidates>& candidates() {
  static const std::vector<Candidates> c = make_candidates();
  return c;
}

using Sets = std::vector<std::array<AttentionKernelSet, kIsaLevels>>;

Sets build_sets() {
  Sets sets(candidates().size());
  for (size_t i = 0; i < sets.size(); ++i)
    for (int level = 0; level < kIsaLevels; ++level) {
      const Candidates& c = candidates()[i];
      const Isa isa = static_cast<Isa>(level);
      sets[i][static_cast<size_t>(level)] =
          AttentionKernelSet{c.k_type, c.v_type, c.algo, isa, pick_for_isa(c.row, isa), pick_for_isa(c.tile, isa),
                             pick_for_isa(c.group, isa)};
    }
  return sets;
}

int pair_index(DType k_type, DType v_type, AttentionAlgo algo) {
  const auto& c = candidates();
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i].k_type == k_type && c[i].v_type == v_type && c[i].algo == algo) return static_cast<int>(i);
  return -1;
}

constexpr AttentionAlgo kAlgos[] = {AttentionAlgo::Exact, AttentionAlgo::Sage, AttentionAlgo::Int8};

}  // namespace

std::string_view attention_algo_name(AttentionAlgo algo) {
  switch (algo) {
    case AttentionAlgo::Exact:
      return "exact";
    case AttentionAlgo::Sage:
      return "sage";
    case AttentionAlgo::Int8:
      return "int8";
  }
  return "?";
}

std::optional<AttentionAlgo> attention_algo_from_name(std::string_view name) {
  for (AttentionAlgo a : kAlgos)
    if (attention_algo_name(a) == name) return a;
  return std::nullopt;
}

std::span<const AttentionAlgo> attention_algos() { return kAlgos; }

std::span<const DType> kv_types() {
  static constexpr DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                                     DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1};
  return kTypes;
}

std::span<const DType> cq_kv_types() {
  static constexpr DType kTypes[] = {DType::CQ2, DType::CQ1};
  return kTypes;
}

bool smooths_keys(DType k_type, AttentionAlgo algo) {
  return (algo == AttentionAlgo::Sage || algo == AttentionAlgo::Int8) && traits(k_type).block_size > 1 &&
         !is_cq(k_type);
}

bool has_attention_kernels(DType k_type, DType v_type, AttentionAlgo algo) {
  return pair_index(k_type, v_type, algo) >= 0;
}

std::string attention_pairs_text() {
  auto names = [](const std::vector<DType>& ts) {
    std::string t;
    for (DType x : ts) t += (t.empty() ? "" : ", ") + std::string(dtype_name(x));
    return t;
  };
  std::vector<DType> all(kv_types().begin(), kv_types().end());
  all.insert(all.end(), cq_kv_types().begin(), cq_kv_types().end());
  std::string out;
  for (AttentionAlgo a : kAlgos) {
    // Per K type (kv_types() order, llama.cpp's), the V types it pairs with;
    // K types with the same V list share one clause.
    std::vector<std::pair<std::vector<DType>, std::vector<DType>>> groups;  // (K types, V types)
    for (DType k : all) {
      std::vector<DType> vs;
      for (DType v : all)
        if (pair_index(k, v, a) >= 0) vs.push_back(v);
      if (vs.empty()) continue;
      auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& x) { return x.second == vs; });
      if (g == groups.end())
        groups.push_back({{k}, vs});
      else
        g->first.push_back(k);
    }
    if (groups.empty()) continue;
    std::string text;
    for (const auto& [ks, vs] : groups) {
      const bool any_v = vs.size() == kv_types().size();
      if (ks.size() == kv_types().size() && any_v) {
        text += std::string(text.empty() ? "" : ", ") + "K any of " + names(ks) + ", V any of " + names(vs);
        continue;
      }
      text += std::string(text.empty() ? "" : ", ") + (ks.size() > 1 ? "K any of " : "K ") + names(ks) +
              (any_v ? " with V any of " : (vs.size() > 1 ? " with V any of " : " V ")) + names(vs);
    }
    out += (out.empty() ? "" : "; ") + std::string(attention_algo_name(a)) + ": " + text;
  }
  return out;
}

const AttentionKernelSet& attention_kernel_set(DType k_type, DType v_type, AttentionAlgo algo, Isa isa) {
  static const Sets sets = build_sets();
  const int i = pair_index(k_type, v_type, algo);
  if (i < 0)
    fail("no attention kernels for attn=", attention_algo_name(algo), " over K ", dtype_name(k_type), " and V ",
         dtype_name(v_type), " (combinations with kernels: ", attention_pairs_text(), ")");
  return sets[static_cast<size_t>(i)][static_cast<size_t>(runnable_isa(isa))];
}

}  // namespace kestrel::kernels
