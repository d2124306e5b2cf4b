#pragma once
// The attention kernels of one (KV element type, algorithm) pair at one Isa
// level: what the engine core picks once per session (runtime/engine_core.h)
// and hands to every forward pass. A new KV format or attention algorithm is a
// new row of the table in attention_set.cpp, not a new code path: the model
// and the KV cache call whatever set they were given.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "kernels/attention_kernels.h"
#include "kernels/attention_tiled.h"
#include "platform/cpu.h"

namespace kestrel::kernels {

// How attention is computed (the `attn` slot of the engine configuration).
enum class AttentionAlgo : uint8_t {
  Exact,  // float scores and softmax over the cache's values, llama.cpp's flash attention order
  Sage,   // SageAttention: K smoothed by its block mean, INT8 Q and K (kernels/attention_sage.h)
  Int8,   // INT-FlashAttention: INT8 Q, K, V and an integer PV (kernels/attention_int8.h)
};
std::string_view attention_algo_name(AttentionAlgo algo);  // "exact", "sage", "int8"
std::optional<AttentionAlgo> attention_algo_from_name(std::string_view name);
std::span<const AttentionAlgo> attention_algos();  // every algorithm, in the order above

// The KV element types (what -ctk/-ctv take), in llama.cpp's order: f32, f16,
// bf16, q8_0, q4_0, q4_1, q5_0, q5_1.
std::span<const DType> kv_types();
// Ours on top (kv/cq_codebook.h): cq2, cq1. K and V both coded, one type,
// with a codebook file (kv/cq_sidecar.h).
std::span<const DType> cq_kv_types();

// The CQ types (kv=cq2, cq1; kernels/cq_attention.h): K and V rows are one
// code byte per group of channels, decoded through this head's codebooks; the
// most recent rows also have exact F16 copies, read instead of the codes.
// Logical block b's copies are at win_k + win_ids[b] * win_stride (elements;
// win_v likewise) when win_ids[b] >= 0. A query over n rows reads the copies of
// rows [0, sink) and [n - window, n) where held and the codes elsewhere, so its result does
// not depend on how the prompt was cut into batches.
struct CqRows {
  const uint16_t* k_centroids = nullptr;  // F16 [d / k_c][k_c k_stages][n_codes] (kv/cq_codebook.h layout)
  const uint16_t* v_centroids = nullptr;
  int k_c = 0;  // channels per group
  int v_c = 0;
  int n_codes = 0;
  const uint16_t* win_k = nullptr;
  const uint16_t* win_v = nullptr;
  const int32_t* win_ids = nullptr;
  int64_t win_stride = 0;
  int64_t window = 0;
  int64_t sink = 0;  // the first rows, read from their copies too (whole blocks)
  // Codebooks learnt under a metric hold whitened centroids E = W C
  // (kv/cq_codebook.h): W per group, F32 [d / c][c][c] upper triangular, or
  // null. Queries and decoded values pass through it (kernels/cq_whiten.h).
  const float* k_whitening = nullptr;
  const float* v_whitening = nullptr;
  // Residual stages of K's (V's) books (kv/cq_codebook.h): centroids
  // [d / c][c stages][n_codes], group g a stage of the block g / stages, whose
  // c stages channels share one whitening ([d / (c stages)][c stages]^2).
  int k_stages = 1;
  int v_stages = 1;
  // Non-zero: the books never change under this number in the process (the
  // KvCache's serial), so prompt tiles may keep the centroids they decoded
  // (kernels/cq_attention.cpp) for the next tile of the same head.
  uint64_t books_serial = 0;
};

// The rows of logical block b (block_len rows) from the returned one on are
// read from the F16 copy by a query over n rows: all of a block within the
// sink, those in the last `window` rows otherwise; none (the block's end) when
// the block has no copy.
inline int64_t cq_first_copied_row(const CqRows& cq, int64_t block_len, int64_t b, int64_t n) {
  const int64_t r0 = b * block_len, r1 = r0 + block_len;
  if (cq.win_ids == nullptr || cq.win_ids[b] < 0) return r1;
  if (r1 <= cq.sink) return r0;
  return std::clamp(n - cq.window, r0, r1);
}

// One head's cached rows with the element type erased: the set that receives
// them was picked for the cache's types (k_type, v_type say which, for the
// kernels that read any block format). Logical block b starts at
// k + ids[b] * stride_bytes (v + ids[b] * v_stride_bytes); rows inside a block
// are contiguous.
struct KvRows {
  const void* k = nullptr;
  const void* v = nullptr;
  const int32_t* ids = nullptr;
  int64_t stride_bytes = 0;
  int64_t block_len = 0;
  int64_t v_stride_bytes = 0;
  DType k_type = DType::F16;
  DType v_type = DType::F16;
  // Hadamard chunks K and V were rotated in (kernels/hadamard.h; 0: none): the
  // set rotates q likewise and the output back.
  int k_rot = 0;
  int v_rot = 0;
  // Smoothed keys (kv/kv_cache.h; else null): logical block b's F16 mean key
  // is at k_mean + (ids[b] / mean_id_div) * mean_stride, and every score of
  // the block adds q . mean (kernels/attention_quant.h). mean_id_div turns a
  // row-addressed id (kv/attention.h window_rows) back into its block's.
  const uint16_t* k_mean = nullptr;
  int64_t mean_stride = 0;
  int64_t mean_id_div = 1;
  CqRows cq = {};  // CQ types only
};

// For the kernels of one plain type (K and V alike, so one stride).
template <class T>
KvBlocks<T> typed_rows(const KvRows& r) {
  return KvBlocks<T>{static_cast<const T*>(r.k), static_cast<const T*>(r.v), r.ids,
                     r.stride_bytes / static_cast<int64_t>(sizeof(T)), r.block_len};
}

// One query row against n rows (decode, and batches under kMinTiledTokens).
using AttendRowFn = void (*)(const KvRows& kv, int64_t n, int d, const float* q, float scale, float* out);
// Up to kMaxTileRows query rows of one sequence and kv head (prompt batches).
using AttendTileFn = void (*)(const KvRows& kv, int d, const TileRows& rows, float scale, float* scratch);

// A decode step of one GQA group: nq <= kMaxGroup query rows (the heads that
// read this KV head) over rows [0, n), out[h] for q[h]; each row's result is
// the row kernel's, bit for bit, but the cache is streamed once for all.
constexpr int kMaxGroup = 16;
using AttendGroupFn = void (*)(const KvRows& kv, int64_t n, int d, const float* const* q, int nq, float scale,
                               float* const* out);

struct AttentionKernelSet {
  DType k_type;
  DType v_type;
  AttentionAlgo algo;
  Isa isa;  // the level the set was resolved for (entries may come from lower ones)
  AttendRowFn row;
  AttendTileFn tile;
  AttendGroupFn group = nullptr;  // null: one row call per query head
};

// The set for (K type, V type, algo) at `isa`, by the project's dispatch rule
// (platform/dispatch.h). Throws kestrel::Error listing the combinations that
// exist when this one has no kernels.
const AttentionKernelSet& attention_kernel_set(DType k_type, DType v_type, AttentionAlgo algo, Isa isa);
bool has_attention_kernels(DType k_type, DType v_type, AttentionAlgo algo);
// Whether the cache must store K smoothed (kv/kv_cache.h) for this pair: sage
// or int8 over a block-quantized K (q8_0, q4_0, ...). Over an F16 cache they
// quantize (and sage smooths) each block on the fly instead
// (kernels/attention_sage.h, attention_int8.h).
bool smooths_keys(DType k_type, AttentionAlgo algo);
// K and V of one type.
inline const AttentionKernelSet& attention_kernel_set(DType kv_type, AttentionAlgo algo, Isa isa) {
  return attention_kernel_set(kv_type, kv_type, algo, isa);
}
inline bool has_attention_kernels(DType kv_type, AttentionAlgo algo) {
  return has_attention_kernels(kv_type, kv_type, algo);
}
// "exact: K and V any of f32, f16, ...": the combinations with kernels, for messages.
std::string attention_pairs_text();

}  // namespace kestrel::kernels
