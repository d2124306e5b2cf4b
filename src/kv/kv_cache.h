#pragma once
// The KV cache, paged: keys and values live in one pool of fixed-size blocks
// shared by all sequences. A block holds kBlock consecutive positions of ONE
// (layer, kv head) of one sequence: [kBlock][head_dim] keys and the same of
// values. Each sequence has a block table per (layer, kv head): its blocks in
// position order, with the position block each one holds. Blocks are taken
// from the pool as a sequence grows and given back when it is cleared,
// shortened, or when blocks are evicted.
//
// Why per (layer, head): KV-Compress (PAPERS.md card 3, the `kvcompress`
// switch) evicts whole blocks at a different rate per head, and an evicted
// block must go back to the pool. Evicted positions are simply absent from that
// head's table: its rows stay in position order, and the attention sees a
// shorter history for that head (KvHeadView::evicted rows fewer). Eviction only
// ever takes full blocks below the sequence's end, so every position written
// after it lands at the end of every table.
//
// Blocks are reference-counted so that sequences can share the blocks of a
// common prefix (share_prefix): a shared system prompt is stored once. A shared
// block is never written: the first store into a block another sequence also
// holds copies it first (copy-on-write), so a sequence that diverges inside a
// partly filled shared block gets its own copy and the others see no change.
//
// Keys and values have their own element types (llama.cpp's -ctk/-ctv): F16
// (llama.cpp's default, and what our logits are compared against), F32, BF16,
// or a block format (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: rows of ggml blocks, written
// by the format's row quantizer as llama.cpp's KV copy writes them). A row is
// whole blocks, so a block of K and one of V are each a plain byte array and
// copy-on-write copies them as bytes.
//
// Smoothed keys (`smooth_k`, SageAttention's smoothing, PAPERS.md card 1; the
// `attn=sage` switch over a block-quantized K): every block holds a mean key
// m_b (F16), and stores k - m_b instead of k, so the quantizer's scales no
// longer have to span a bias all keys share (Qwen2.5's k_proj bias: a 4-bit K
// is useless without it, docs/benchmarks.md). The attention adds q . m_b back
// once per block, which makes any m_b exact; the choice only decides the
// rounding error. m_b is fixed at the block's first store: the mean of the
// head's previous block in its table (its stored rows dequantized, plus its own
// m), or, for a head's first block, that first key itself. Means live in their
// own pool, [block][d], copied with the block on copy-on-write.
//
// Coupled quantization (the CQ types cq2, cq1; kv/cq_codebook.h, PAPERS.md
// card 8): K and V are CQ types (the same one, or two: 2-bit keys with 1-bit values,
// kv=cq2/cq1), and a block holds one code byte per channel group per row,
// encoded with that (layer, head)'s codebooks (a sidecar file per type,
// kv/cq_sidecar.h). The most recent `window` rows of each head
// also keep an exact F16 copy (CQ's full-precision window): every block
// written gets one from a second pool of the same number of blocks, and
// grow_seq_len / set_seq_len give back the copies of blocks whose rows all lie
// before the last `window` rows of their head. The attention reads a copy for
// a row within the last `window` rows it sees, codes otherwise
// (kernels/cq_attention.h). Copies are never shared: share_prefix copies them,
// so copy-on-write concerns the codes only. A block whose copy was given back
// and that is written again (a sequence cut back into it) gets a new copy of
// its decoded codes for the rows before. The sidecar's exact layers
// (CqCodebooks::exact_layers) keep every copy and read nothing but copies.
//
// The pools are reserved for the whole context but committed page by page as
// blocks are first written (platform/mmap.h ZeroedPages): resident memory grows
// with the tokens cached, not with -c.
//
// Running out of blocks throws an Error carrying the numbers; callers that
// share the pool (runtime/scheduler.h) admit work only when blocks_needed()
// fits in free_blocks(), so it does not happen to them.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "kernels/attention_set.h"
#include "kernels/cq_kernels.h"
#include "kv/cq_sidecar.h"
#include "platform/cpu.h"
#include "platform/mmap.h"

namespace kestrel {

struct KvShape {
  int n_layer = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  int64_t n_ctx = 0;  // positions one sequence may hold
  int n_seq = 1;
  // Positions in the shared pool (rounded up to whole blocks). 0: enough for
  // every sequence to hold n_ctx positions at once (no sharing needed).
  int64_t n_pool = 0;
};

// One (layer, kv head) of a sequence: logical block b of its rows starts at
// k + blocks[b] * block_stride bytes (v + blocks[b] * v_block_stride); rows
// inside a block are contiguous, [kBlock] rows of KvCache::k_row_bytes()
// (v_row_bytes()). Element types per KvCache::k_type() and v_type().
// `evicted` rows (whole blocks) of the positions before the sequence's end are
// not in the table: a token at position p sees p + 1 - evicted rows.
struct KvHeadView {
  const void* k = nullptr;
  const void* v = nullptr;
  const int32_t* blocks = nullptr;
  int64_t block_stride = 0;    // bytes, keys
  int64_t v_block_stride = 0;  // bytes, values
  DType k_type = DType::F16;
  DType v_type = DType::F16;
  int k_rot = 0;  // Hadamard chunk K was rotated in before storing (0: none; kernels/hadamard.h)
  int v_rot = 0;  // likewise V: the attention output must be rotated back
  // Smoothed keys only (else null): the F16 mean of logical block b is at
  // k_mean + blocks[b] * mean_stride (elements), head_dim values.
  const uint16_t* k_mean = nullptr;
  int64_t mean_stride = 0;
  int64_t evicted = 0;
  kernels::CqRows cq = {};  // CQ types: this head's codebooks and F16 copies
};

// What a CQ cache needs (types cq2, cq1).
struct KvCq {
  std::shared_ptr<const CqCodebooks> books;  // for this model, K's of K's CQ type, V's of V's (mixed_cq_codebooks)
  int64_t window = 128;                      // rows per head kept in F16 as well
  int64_t sink = 16;                         // the first rows of each head, kept in F16 as well (whole blocks)
};

// One block of one (layer, kv head) of a sequence, by its index in that head's
// table (KvCache::evict).
struct KvBlockRef {
  int layer = 0;
  int head = 0;
  int64_t index = 0;
};

class KvCache {
 public:
  // 16 positions per block. Small enough that a sequence wastes at most 15
  // positions and that prompts share at a fine grain (a prefix is shared in
  // whole blocks plus one copied partial block); large enough that the
  // attention loop streams 16 rows (2 KB of F16 keys at head_dim 64: 32 cache
  // lines) between block-table lookups, which costs nothing measurable. vLLM
  // and llama.cpp's paged attention use 16 as well.
  static constexpr int kBlock = 16;

  // `isa` picks the row quantizers that store keys and values (every Isa
  // writes the same bytes). Throws for a type without one, or whose block does
  // not divide the head dimension (naming the types that would).
  // `rotate`: llama.cpp's Hadamard rotation of block-quantized K and V
  // (kernels/hadamard.h), on by default as in llama.cpp; plain types are never rotated.
  // `smooth_k`: store keys smoothed by a per-block mean (above); K must be a
  // block format (throws naming them otherwise).
  // CQ types (K and V both CQ) need `cq`: codebooks of those types for this
  // shape (throws naming what differs otherwise); they are never rotated.
  KvCache(KvShape shape, DType k_type, DType v_type, Isa isa = best_isa(), bool rotate = true, bool smooth_k = false,
          KvCq cq = {});
  KvCache(KvShape shape, DType type, Isa isa = best_isa()) : KvCache(shape, type, type, isa) {}

  const KvShape& shape() const { return shape_; }
  DType k_type() const { return k_type_; }
  DType v_type() const { return v_type_; }
  // Reserved, not resident: the pools, and a CQ cache's codebooks.
  size_t bytes() const {
    return k_.size() + v_.size() + means_.size() + win_k_.size() + win_v_.size() + codebook_bytes();
  }
  // Of those, the bytes in RAM (the pools are committed page by page as blocks
  // are written, and keep the pages of blocks given back: a high-water mark),
  // and the codebooks (read whole by every coded row).
  size_t resident_bytes() const {
    return k_.resident_bytes() + v_.resident_bytes() + means_.resident_bytes() + win_k_.resident_bytes() +
           win_v_.resident_bytes() + codebook_bytes();
  }
  // CQ: the model's codebooks (CqCodebooks::bytes), 0 for other types. Shared
  // by every sequence of the cache, so every total above counts them once.
  size_t codebook_bytes() const { return cq_.books ? cq_.books->bytes() : 0; }
  // The bytes of one block: K and V of one (layer, head), and its mean (not
  // the F16 copies of a CQ cache: copy_bytes()).
  size_t block_bytes() const { return (k_.size() + v_.size() + means_.size()) / static_cast<size_t>(total_blocks()); }
  // CQ: the bytes of one block's F16 copy (K and V), and how many copies are held.
  size_t copy_bytes() const { return 2 * static_cast<size_t>(kBlock) * shape_.head_dim * sizeof(uint16_t); }
  int64_t copies_held() const { return cq_.books ? total_blocks() - static_cast<int64_t>(win_free_.size()) : 0; }
  bool is_cq_cache() const { return cq_.books != nullptr; }
  int64_t cq_window() const { return cq_.window; }
  bool smooths_k() const { return smooth_k_; }
  size_t k_row_bytes() const { return k_row_bytes_; }  // one head's keys at one position
  size_t v_row_bytes() const { return v_row_bytes_; }  // one head's values at one position
  int k_rotation() const { return k_rot_; }  // Hadamard chunk of the stored keys, 0 = none
  int v_rotation() const { return v_rot_; }

  // Stores one token's keys and values ([n_kv_head * head_dim] each) at pos,
  // taking blocks from the pool up to pos (and copying a shared block first).
  // Throws when pos is outside the context, falls in an evicted block, or the
  // pool has no free block.
  void store(int layer, int seq, int64_t pos, const float* k, const float* v);

  // The blocks holding one head's rows of a sequence (the attention's input).
  KvHeadView view(int layer, int seq, int head) const;
  // Logical row r of a view as floats, as the attention reads it for a query
  // over n rows: dequantized, the smoothing mean added back, for CQ the F16
  // copy or the decoded codes. Rotated keys stay rotated (view.k_rot).
  void key_row(const KvHeadView& view, int64_t r, int64_t n, float* out) const;

  // Number of positions of a sequence that hold valid entries (the runtime keeps it).
  int64_t seq_len(int seq) const { return seq_len_[checked(seq)]; }
  // Shortening gives back the blocks past the new end; growing takes blocks.
  // A sequence with evicted blocks can be shortened only to a length at or
  // past its last evicted block (min_len()); anything shorter throws.
  void set_seq_len(int seq, int64_t n);
  // Lengthens seq to n if it is shorter (the positions below n were stored:
  // a forward pass marks what it wrote); never gives blocks back.
  void grow_seq_len(int seq, int64_t n);
  // The shortest length set_seq_len and share_prefix accept for seq: 0, or
  // the end of its last evicted block.
  int64_t min_len(int seq) const { return min_len_[checked(seq)]; }

  // Removes these full blocks from their heads' tables and gives them back to
  // the pool (shared ones when no other sequence holds them). Each must be a
  // full block below the last position block of the sequence; indices refer to
  // the tables before this call. Throws otherwise, changing nothing.
  void evict(int seq, std::span<const KvBlockRef> blocks);
  // Rows of a (layer, head) of seq that were evicted.
  int64_t evicted_rows(int seq, int layer, int head) const;
  // The position block (position / kBlock) logical block i of a head holds.
  int64_t block_position(int seq, int layer, int head, int64_t i) const;
  void clear_seq(int seq);
  void clear();  // every sequence

  // dst drops what it held and shares src's blocks for positions [0, n):
  // seq_len(dst) = n. n <= seq_len(src). dst == src shortens.
  void share_prefix(int dst, int src, int64_t n);

  // Blocks the pool must still provide so that seq can hold positions
  // [seq_len(seq), n): new blocks, plus a copy of its last block when that is
  // partly filled and shared. 0 when n <= seq_len(seq).
  int64_t blocks_needed(int seq, int64_t n) const;

  int64_t block_size() const { return kBlock; }
  // Blocks per position block: one per (layer, kv head). Counts of blocks over
  // this are in position blocks (kBlock positions of every head), the unit the
  // scheduler reports; with evictions they are fractional, rounded up.
  int64_t heads_per_position_block() const { return int64_t{shape_.n_layer} * shape_.n_kv_head; }
  int64_t in_position_blocks(int64_t blocks) const {
    return (blocks + heads_per_position_block() - 1) / heads_per_position_block();
  }
  int64_t total_blocks() const { return static_cast<int64_t>(ref_.size()); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return total_blocks() - free_blocks(); }
  // Distinct blocks held by any of the given sequences (shared ones once).
  int64_t blocks_held(std::span<const int> seqs) const;
  // The bytes those blocks hold, with the F16 copies of a CQ cache (never
  // shared) and, once, its codebooks (what any of its sequences reads).
  int64_t bytes_held(std::span<const int> seqs) const;
  // The blocks of one (layer, head) of seq, in position order.
  const std::vector<int32_t>& block_table(int seq, int layer = 0, int head = 0) const {
    return tables_[checked(seq)][slice(layer, head)].ids;
  }
  int ref_count(int32_t block) const { return ref_[static_cast<size_t>(block)]; }

 private:
  // One (layer, head)'s blocks and the position block each holds.
  struct HeadTable {
    std::vector<int32_t> ids;
    std::vector<int32_t> pos;  // position / kBlock of the block's first row
    std::vector<int32_t> win;  // CQ: the block's F16 copy, -1 none (empty otherwise)
  };
  size_t slice(int layer, int head) const { return static_cast<size_t>(layer) * shape_.n_kv_head + head; }
  int n_slices() const { return shape_.n_layer * shape_.n_kv_head; }
  int checked(int seq) const;
  int32_t take_block();
  void drop_block(int32_t b);
  // Gives back the blocks of every head whose position block is >= pb_end.
  void truncate(int seq, int64_t pb_end);
  // Takes blocks so that every head holds position blocks up to pb_end.
  void extend(int seq, int64_t pb_end);
  void extend_table(HeadTable& t, int seq, int64_t pb_end);
  // The physical block for pos in one head, made private to seq (taken or
  // copied); i: its index in the head's table.
  int32_t writable_block(int seq, size_t s, int64_t pos, size_t& i);

  // CQ: the F16 copies.
  int32_t take_copy();
  void drop_copy(int32_t& w);
  uint16_t* copy_k(int32_t w) {
    return reinterpret_cast<uint16_t*>(win_k_.data()) + static_cast<size_t>(w) * kBlock * shape_.head_dim;
  }
  uint16_t* copy_v(int32_t w) {
    return reinterpret_cast<uint16_t*>(win_v_.data()) + static_cast<size_t>(w) * kBlock * shape_.head_dim;
  }
  // The copy of logical block i of slice s, made (rows before `row` decoded
  // from the codes) if the block has none.
  int32_t writable_copy(int seq, size_t s, size_t i, int32_t b, size_t row);
  // Gives back the copies of blocks whose rows all lie before the last window rows of their head.
  void trim_copies(int seq);
  // Writes one head's key and value row as codes.
  void store_codes(int layer, int head, int32_t b, size_t row, const float* k, const float* v);

  using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n);
  using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n);
  uint16_t* mean_of(int32_t b);
  // Fixes the mean of block b, logical block i of head slice s of seq, from
  // this token's key kh (rotated as stored).
  void set_mean(int seq, size_t s, size_t i, int32_t b, const float* kh);

  KvShape shape_;
  DType k_type_, v_type_;
  QuantizeRowFn quantize_k_ = nullptr, quantize_v_ = nullptr;
  size_t k_row_bytes_ = 0, v_row_bytes_ = 0;
  int k_rot_ = 0, v_rot_ = 0;
  size_t k_block_bytes_ = 0, v_block_bytes_ = 0;  // one block of K (of V): kBlock rows of one head
  ZeroedPages k_, v_;                             // [n_blocks][kBlock][head_dim]
  bool smooth_k_ = false;
  DequantizeRowFn dequantize_k_ = nullptr;  // smoothed keys: reads a block back for the next one's mean
  ZeroedPages means_;                       // smoothed keys: F16 [n_blocks][head_dim]
  std::vector<uint8_t> mean_set_;           // smoothed keys: per block, 1 once its mean is fixed
  KvCq cq_;                                 // CQ types: the codebooks (null otherwise) and window
  uint64_t cq_serial_ = 0;                  // CQ: unique to this cache in the process (CqRows::books_serial)
  kernels::CqEncodeFn cq_encode_ = nullptr;  // CQ: the row encoder at the cache's Isa
  ZeroedPages win_k_, win_v_;                // CQ: F16 copies [n_blocks][kBlock][head_dim]
  std::vector<int32_t> win_free_;            // CQ: free copies; the next one taken is back()
  std::vector<int32_t> ref_;                // per physical block: sequences holding it
  std::vector<int32_t> free_;               // free block ids; the next one taken is back()
  std::vector<std::vector<HeadTable>> tables_;  // per sequence, per (layer, head)
  std::vector<int64_t> seq_len_;
  std::vector<int64_t> min_len_;  // per sequence: end of its last evicted block
};

}  // namespace kestrel
