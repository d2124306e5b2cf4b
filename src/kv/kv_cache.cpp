#include "kv/kv_cache.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/attention_set.h"
#include "kernels/cq_whiten.h"
#include "kernels/hadamard.h"
#include "kernels/quant_kernels.h"

namespace kestrel {
namespace {

int64_t blocks_for(int64_t positions) { return (positions + KvCache::kBlock - 1) / KvCache::kBlock; }

std::string types_fitting(int head_dim) {
  std::string out;
  for (DType t : kernels::kv_types())
    if (head_dim % traits(t).block_size == 0) out += (out.empty() ? "" : ", ") + std::string(dtype_name(t));
  return out;
}

kernels::QuantizeRowFn checked_quantizer(DType type, int head_dim, Isa isa, const char* what) {
  if (!kernels::has_quant_kernels(type) || kernels::quant_kernels(type, isa).quantize_row == nullptr)
    fail("kv cache: no row quantizer stores ", dtype_name(type), " ", what, " (types that fit head dimension ",
         head_dim, ": ", types_fitting(head_dim), ")");
  if (head_dim % traits(type).block_size != 0)
    fail("kv cache: ", dtype_name(type), " stores blocks of ", traits(type).block_size, " values, which do not divide the head dimension ",
         head_dim, " (types that fit: ", types_fitting(head_dim), ")");
  return kernels::quant_kernels(type, isa).quantize_row;
}

// A CQ cache: K and V each of a CQ type (the same, or kv=cq2/cq1), codebooks
// of those types and of this shape.
void check_cq_cache(DType k_type, DType v_type, const KvShape& shape, const KvCq& cq, bool smooth_k) {
  if (!is_cq(k_type) || !is_cq(v_type))
    fail("kv cache: ", dtype_name(k_type), " keys with ", dtype_name(v_type),
         " values: a CQ cache codes both K and V (kv=cq2, cq1, or two as K/V: cq2/cq1 for 2-bit keys with 1-bit "
         "values)");
  if (smooth_k) fail("kv cache: ", dtype_name(k_type), " keys cannot be smoothed (attn=exact reads a CQ cache)");
  if (!cq.books)
    fail("kv cache: ", dtype_name(k_type), " needs codebooks (kestrel calibrate kv --cq ", dtype_name(k_type), ")");
  if (cq.window < 0) fail("kv cache: a CQ window of ", cq.window, " rows");
  const CqCodebooks& b = *cq.books;
  const CqSpec want_k = k_type == DType::CQ2 ? kCq2 : kCq1, want_v = v_type == DType::CQ2 ? kCq2 : kCq1;
  if (!(b.spec == want_k))
    fail("kv cache: ", dtype_name(k_type), (k_type == v_type ? "" : " keys"), " needs ", cq_spec_name(want_k),
         " codebooks, not ", cq_spec_name(b.spec));
  if (!(b.value_spec() == want_v))
    fail("kv cache: ", dtype_name(v_type), " values need ", cq_spec_name(want_v), " codebooks, not ",
         cq_spec_name(b.value_spec()));
  if (b.model.n_layer != shape.n_layer || b.model.n_kv_head != shape.n_kv_head ||
      b.model.k_head_dim != shape.head_dim || b.model.v_head_dim != shape.head_dim ||
      b.k.size() != static_cast<size_t>(shape.n_layer) * shape.n_kv_head || b.v.size() != b.k.size())
    fail("kv cache: codebooks for ", b.model.n_layer, " layers x ", b.model.n_kv_head, " kv heads of ",
         b.model.k_head_dim, "/", b.model.v_head_dim, " channels do not fit a cache of ", shape.n_layer, " x ",
         shape.n_kv_head, " of ", shape.head_dim);
}

}  // namespace

KvCache::KvCache(KvShape shape, DType k_type, DType v_type, Isa isa, bool rotate, bool smooth_k, KvCq cq)
    : shape_(shape), k_type_(k_type), v_type_(v_type), smooth_k_(smooth_k), cq_(std::move(cq)) {
  if (shape.n_layer <= 0 || shape.n_kv_head <= 0 || shape.head_dim <= 0 || shape.n_ctx <= 0 || shape.n_seq <= 0 ||
      shape.n_pool < 0)
    fail("kv cache: invalid shape (layers ", shape.n_layer, ", kv heads ", shape.n_kv_head, ", head dim ",
         shape.head_dim, ", ctx ", shape.n_ctx, ", seqs ", shape.n_seq, ", pool ", shape.n_pool, ")");
  if (is_cq(k_type) || is_cq(v_type)) {
    check_cq_cache(k_type, v_type, shape, cq_, smooth_k);
    cq_encode_ = kernels::cq_kernels(isa).encode;
    static std::atomic<uint64_t> next_serial{1};
    cq_serial_ = next_serial.fetch_add(1, std::memory_order_relaxed);
  } else {
    if (cq_.books)
      fail("kv cache: codebooks were given for a ", dtype_name(k_type), " cache (only cq2 and cq1 use them)");
    quantize_k_ = checked_quantizer(k_type, shape.head_dim, isa, "keys");
    quantize_v_ = checked_quantizer(v_type, shape.head_dim, isa, "values");
    k_rot_ = rotate ? kernels::k_rotation_block(traits(k_type).block_size > 1, shape.head_dim) : 0;
    v_rot_ = rotate ? kernels::v_rotation_block(traits(v_type).block_size > 1, shape.head_dim) : 0;
  }
  k_row_bytes_ = kestrel::row_bytes(k_type, shape.head_dim);
  v_row_bytes_ = kestrel::row_bytes(v_type, shape.head_dim);
  const int64_t position_blocks = shape.n_pool > 0 ? blocks_for(shape.n_pool) : shape.n_seq * blocks_for(shape.n_ctx);
  const int64_t n_blocks = position_blocks * shape.n_layer * shape.n_kv_head;
  if (n_blocks > INT32_MAX) fail("kv cache: a pool of ", n_blocks, " blocks is too large");
  k_block_bytes_ = static_cast<size_t>(kBlock) * k_row_bytes_;
  v_block_bytes_ = static_cast<size_t>(kBlock) * v_row_bytes_;
  k_ = ZeroedPages(static_cast<size_t>(n_blocks) * k_block_bytes_);
  v_ = ZeroedPages(static_cast<size_t>(n_blocks) * v_block_bytes_);
  if (smooth_k) {
    if (traits(k_type).block_size == 1)
      fail("kv cache: smoothed keys (attn=sage over a quantized K) need a block-quantized K type (q8_0, q4_0, q4_1, "
           "q5_0, q5_1), not ", dtype_name(k_type));
    dequantize_k_ = kernels::quant_kernels(k_type, isa).dequantize_row;
    means_ = ZeroedPages(static_cast<size_t>(n_blocks) * shape.head_dim * sizeof(uint16_t));
    mean_set_.assign(static_cast<size_t>(n_blocks), 0);
  }
  if (cq_.books) {
    const size_t copy_bytes = static_cast<size_t>(kBlock) * shape.head_dim * sizeof(uint16_t);
    win_k_ = ZeroedPages(static_cast<size_t>(n_blocks) * copy_bytes);
    win_v_ = ZeroedPages(static_cast<size_t>(n_blocks) * copy_bytes);
    win_free_.resize(static_cast<size_t>(n_blocks));
    for (int64_t i = 0; i < n_blocks; ++i) win_free_[static_cast<size_t>(i)] = static_cast<int32_t>(n_blocks - 1 - i);
  }
  ref_.assign(static_cast<size_t>(n_blocks), 0);
  // Taken from the back: block 0 first, so a lone sequence is laid out in order.
  free_.resize(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) free_[static_cast<size_t>(i)] = static_cast<int32_t>(n_blocks - 1 - i);
  tables_.assign(shape.n_seq, std::vector<HeadTable>(static_cast<size_t>(n_slices())));
  seq_len_.assign(shape.n_seq, 0);
  min_len_.assign(shape.n_seq, 0);
}

int KvCache::checked(int seq) const {
  if (seq < 0 || seq >= shape_.n_seq) fail("kv cache: sequence id ", seq, " outside [0, ", shape_.n_seq, ")");
  return seq;
}

int32_t KvCache::take_block() {
  if (free_.empty())
    fail("kv cache: out of blocks: all ", total_blocks(), " blocks of ", kBlock, " positions of one head (",
         total_blocks() * kBlock / (int64_t{shape_.n_layer} * shape_.n_kv_head), " positions) are in use");
  const int32_t b = free_.back();
  free_.pop_back();
  ref_[b] = 1;
  if (smooth_k_) mean_set_[static_cast<size_t>(b)] = 0;
  return b;
}

void KvCache::drop_block(int32_t b) {
  if (--ref_[b] == 0) free_.push_back(b);
}

int32_t KvCache::take_copy() {
  // As many copies as blocks: a block has at most one, so this never runs dry.
  const int32_t w = win_free_.back();
  win_free_.pop_back();
  return w;
}

void KvCache::drop_copy(int32_t& w) {
  if (w < 0) return;
  win_free_.push_back(w);
  w = -1;
}

void KvCache::truncate(int seq, int64_t pb_end) {
  for (HeadTable& t : tables_[seq])
    while (!t.pos.empty() && t.pos.back() >= pb_end) {
      drop_block(t.ids.back());
      drop_copy(t.win.back());
      t.ids.pop_back();
      t.pos.pop_back();
      t.win.pop_back();
    }
}

int32_t KvCache::writable_block(int seq, size_t s, int64_t pos, size_t& i) {
  HeadTable& t = tables_[seq][s];
  const int32_t pb = static_cast<int32_t>(pos / kBlock);
  // Positions are written at the end of every table (eviction takes only
  // blocks below the end): the block is the last one, or a new one after it.
  // Blocks skipped by a jump forward stay allocated, as set_seq_len grows.
  if (pos >= min_len_[seq]) extend_table(t, seq, int64_t{pb} + 1);
  const auto it = std::lower_bound(t.pos.begin(), t.pos.end(), pb);
  if (it == t.pos.end() || *it != pb) fail("kv cache: position ", pos, " of sequence ", seq, " lies in an evicted block");
  i = static_cast<size_t>(it - t.pos.begin());
  const int32_t b = t.ids[i];
  if (ref_[b] == 1) return b;
  // Shared: copy the block (the positions before pos are the common prefix)
  // and write into the copy. Rows are whole quant blocks, so the bytes are the
  // copy for every element type.
  const int32_t c = take_block();
  std::memcpy(k_.data() + static_cast<size_t>(c) * k_block_bytes_, k_.data() + static_cast<size_t>(b) * k_block_bytes_,
              k_block_bytes_);
  std::memcpy(v_.data() + static_cast<size_t>(c) * v_block_bytes_, v_.data() + static_cast<size_t>(b) * v_block_bytes_,
              v_block_bytes_);
  if (smooth_k_) {
    std::memcpy(mean_of(c), mean_of(b), static_cast<size_t>(shape_.head_dim) * sizeof(uint16_t));
    mean_set_[static_cast<size_t>(c)] = mean_set_[static_cast<size_t>(b)];
  }
  drop_block(b);
  t.ids[i] = c;
  return c;
}

void KvCache::store(int layer, int seq, int64_t pos, const float* k, const float* v) {
  checked(seq);
  if (pos < 0 || pos >= shape_.n_ctx) fail("kv cache: position ", pos, " outside context of ", shape_.n_ctx);
  if (layer < 0 || layer >= shape_.n_layer) fail("kv cache: layer ", layer, " outside [0, ", shape_.n_layer, ")");
  const int d = shape_.head_dim;
  const size_t row = static_cast<size_t>(pos % kBlock);
  thread_local std::vector<float> rk, rv;  // rotated (and smoothed) copies
  if (k_rot_ || smooth_k_) rk.assign(k, k + static_cast<size_t>(shape_.n_kv_head) * d);
  if (v_rot_) rv.assign(v, v + static_cast<size_t>(shape_.n_kv_head) * d);
  for (int h = 0; h < shape_.n_kv_head; ++h) {
    const size_t s = slice(layer, h);
    size_t i = 0;  // the block's index in the head's table
    const int32_t b = writable_block(seq, s, pos, i);
    float* kr = (k_rot_ || smooth_k_) ? rk.data() + static_cast<size_t>(h) * d : nullptr;
    if (k_rot_) kernels::hadamard_chunks(kr, d, k_rot_);
    if (smooth_k_) {
      if (!mean_set_[static_cast<size_t>(b)]) set_mean(seq, s, i, b, kr);
      const uint16_t* m = mean_of(b);
      for (int c = 0; c < d; ++c) kr[c] -= fp16_to_f32(m[c]);
    }
    if (cq_.books) {
      store_codes(layer, h, b, row, k + static_cast<size_t>(h) * d, v + static_cast<size_t>(h) * d);
      const int32_t w = writable_copy(seq, s, i, b, row);
      for (int c = 0; c < d; ++c) {
        copy_k(w)[row * d + c] = f32_to_fp16(k[static_cast<size_t>(h) * d + c]);
        copy_v(w)[row * d + c] = f32_to_fp16(v[static_cast<size_t>(h) * d + c]);
      }
      continue;
    }
    const float* kh = (k_rot_ || smooth_k_) ? kr : k + static_cast<size_t>(h) * d;
    const float* vh = v + static_cast<size_t>(h) * d;
    if (v_rot_) {
      kernels::hadamard_chunks(rv.data() + static_cast<size_t>(h) * d, d, v_rot_);
      vh = rv.data() + static_cast<size_t>(h) * d;
    }
    quantize_k_(kh, k_.data() + static_cast<size_t>(b) * k_block_bytes_ + row * k_row_bytes_, d);
    quantize_v_(vh, v_.data() + static_cast<size_t>(b) * v_block_bytes_ + row * v_row_bytes_, d);
  }
}

void KvCache::store_codes(int layer, int head, int32_t b, size_t row, const float* k, const float* v) {
  uint8_t* kc = k_.data() + static_cast<size_t>(b) * k_block_bytes_ + row * k_row_bytes_;
  uint8_t* vc = v_.data() + static_cast<size_t>(b) * v_block_bytes_ + row * v_row_bytes_;
  const CqCodebook& kb = cq_.books->key(layer, head);
  const CqCodebook& vb = cq_.books->value(layer, head);
  cq_encode(kb, cq_encode_, k, kc);  // through the book's whitening when the sidecar has one
  cq_encode(vb, cq_encode_, v, vc);
}

int32_t KvCache::writable_copy(int seq, size_t s, size_t i, int32_t b, size_t row) {
  int32_t& w = tables_[seq][s].win[i];
  if (w >= 0) return w;
  w = take_copy();
  // The rows before were coded only (this block's copy was given back): the
  // copy starts as their decoded codes.
  const int d = shape_.head_dim;
  const int layer = static_cast<int>(s / shape_.n_kv_head), head = static_cast<int>(s % shape_.n_kv_head);
  std::vector<float> k(static_cast<size_t>(d)), v(static_cast<size_t>(d));
  for (size_t r = 0; r < row; ++r) {
    cq_decode_row(cq_.books->key(layer, head),
                  {k_.data() + static_cast<size_t>(b) * k_block_bytes_ + r * k_row_bytes_, k_row_bytes_}, k);
    cq_decode_row(cq_.books->value(layer, head),
                  {v_.data() + static_cast<size_t>(b) * v_block_bytes_ + r * v_row_bytes_, v_row_bytes_}, v);
    for (int c = 0; c < d; ++c) {
      copy_k(w)[r * d + c] = f32_to_fp16(k[c]);
      copy_v(w)[r * d + c] = f32_to_fp16(v[c]);
    }
  }
  return w;
}

void KvCache::trim_copies(int seq) {
  if (!cq_.books) return;
  // The sidecar's exact layers keep every copy.
  for (int layer = cq_.books->exact_layers; layer < shape_.n_layer; ++layer)
    for (int head = 0; head < shape_.n_kv_head; ++head) {
      HeadTable& t = tables_[seq][slice(layer, head)];
      const int64_t rows = seq_len_[seq] - evicted_rows(seq, layer, head);
      // Logical block i holds rows [i kBlock, (i + 1) kBlock). Copies are the
      // sink's and a run of blocks at the end of the table (writes land at the
      // end; eviction only removes blocks): walk down from the last block
      // before the window while the run lasts, not over the whole table.
      for (int64_t i = (rows - cq_.window) / kBlock - 1; i >= 0 && (i + 1) * kBlock > cq_.sink && t.win[i] >= 0; --i)
        drop_copy(t.win[i]);
    }
}

void KvCache::key_row(const KvHeadView& view, int64_t r, int64_t n, float* out) const {
  const int d = shape_.head_dim;
  const int64_t blk = view.blocks[r / kBlock];
  const int64_t row = r % kBlock;
  const auto* bytes =
      static_cast<const uint8_t*>(view.k) + blk * view.block_stride + row * static_cast<int64_t>(k_row_bytes_);
  if (cq_.books) {
    const kernels::CqRows& cq = view.cq;
    if (r < kernels::cq_first_copied_row(cq, kBlock, r / kBlock, n)) {
      kernels::cq_decode(bytes, cq.k_centroids, d, cq.k_c, cq.n_codes, out, cq.k_stages);
      if (cq.k_whitening) kernels::cq_unwhiten_row(cq.k_whitening, d, cq.k_c * cq.k_stages, out);
      return;
    }
    const uint16_t* k = cq.win_k + cq.win_ids[r / kBlock] * cq.win_stride + row * d;
    for (int c = 0; c < d; ++c) out[c] = fp16_to_f32(k[c]);
    return;
  }
  kernels::quant_kernels(k_type_, Isa::Scalar).dequantize_row(bytes, out, d);
  if (view.k_mean)  // smoothed keys: the block's mean comes back
    for (int c = 0; c < d; ++c) out[c] += fp16_to_f32(view.k_mean[blk * view.mean_stride + c]);
}

uint16_t* KvCache::mean_of(int32_t b) {
  return reinterpret_cast<uint16_t*>(means_.data()) + static_cast<size_t>(b) * shape_.head_dim;
}

void KvCache::set_mean(int seq, size_t s, size_t i, int32_t b, const float* kh) {
  const int d = shape_.head_dim;
  uint16_t* m = mean_of(b);
  mean_set_[static_cast<size_t>(b)] = 1;
  if (i == 0) {  // the head's first key
    for (int c = 0; c < d; ++c) m[c] = f32_to_fp16(kh[c]);
    return;
  }
  // The previous block is full: the mean of what it holds, in the stored space.
  const int32_t p = tables_[seq][s].ids[i - 1];
  const uint8_t* rows = k_.data() + static_cast<size_t>(p) * k_block_bytes_;
  const uint16_t* pm = mean_of(p);
  std::vector<float> mean(static_cast<size_t>(d), 0.0f), row(static_cast<size_t>(d));
  for (int j = 0; j < kBlock; ++j) {
    dequantize_k_(rows + static_cast<size_t>(j) * k_row_bytes_, row.data(), d);
    for (int c = 0; c < d; ++c) mean[c] += row[c];
  }
  for (int c = 0; c < d; ++c) m[c] = f32_to_fp16(mean[c] / kBlock + fp16_to_f32(pm[c]));
}

namespace {
// The window of an exact layer: every row is read from its copy.
constexpr int64_t kCqEveryRow = int64_t{1} << 62;
}  // namespace

KvHeadView KvCache::view(int layer, int seq, int head) const {
  const HeadTable& t = tables_[checked(seq)][slice(layer, head)];
  kernels::CqRows cq;
  if (cq_.books) {
    const CqCodebook& kb = cq_.books->key(layer, head);
    const CqCodebook& vb = cq_.books->value(layer, head);
    cq = kernels::CqRows{kb.centroids.data(),
                         vb.centroids.data(),
                         kb.spec.channels_per_group,
                         vb.spec.channels_per_group,
                         kb.spec.n_codes(),
                         reinterpret_cast<const uint16_t*>(win_k_.data()),
                         reinterpret_cast<const uint16_t*>(win_v_.data()),
                         t.win.data(),
                         static_cast<int64_t>(kBlock) * shape_.head_dim,
                         layer < cq_.books->exact_layers ? kCqEveryRow : cq_.window,
                         cq_.sink,
                         kb.whitened() ? kb.whitening.data() : nullptr,
                         vb.whitened() ? vb.whitening.data() : nullptr,
                         kb.stages,
                         vb.stages,
                         cq_serial_};
  }
  return KvHeadView{k_.data(),
                    v_.data(),
                    t.ids.data(),
                    static_cast<int64_t>(k_block_bytes_),
                    static_cast<int64_t>(v_block_bytes_),
                    k_type_,
                    v_type_,
                    k_rot_,
                    v_rot_,
                    smooth_k_ ? reinterpret_cast<const uint16_t*>(means_.data()) : nullptr,
                    smooth_k_ ? static_cast<int64_t>(shape_.head_dim) : 0,
                    evicted_rows(seq, layer, head),
                    cq};
}

int64_t KvCache::evicted_rows(int seq, int layer, int head) const {
  if (min_len_[checked(seq)] == 0) return 0;
  const HeadTable& t = tables_[seq][slice(layer, head)];
  // Position blocks below the last one held, minus those held below it.
  if (t.pos.empty()) return 0;
  return (static_cast<int64_t>(t.pos.back()) + 1 - static_cast<int64_t>(t.pos.size())) * kBlock;
}

int64_t KvCache::block_position(int seq, int layer, int head, int64_t i) const {
  const HeadTable& t = tables_[checked(seq)][slice(layer, head)];
  if (i < 0 || i >= static_cast<int64_t>(t.pos.size()))
    fail("kv cache: block ", i, " outside the ", t.pos.size(), " blocks of layer ", layer, " head ", head);
  return t.pos[static_cast<size_t>(i)];
}

void KvCache::set_seq_len(int seq, int64_t n) {
  checked(seq);
  if (n < 0 || n > shape_.n_ctx) fail("kv cache: length ", n, " outside context of ", shape_.n_ctx);
  if (n < min_len_[seq])
    fail("kv cache: sequence ", seq, " had blocks evicted up to position ", min_len_[seq],
         "; it cannot be shortened to ", n, " (clear it instead)");
  truncate(seq, blocks_for(n));
  extend(seq, blocks_for(n));
  seq_len_[seq] = n;
  trim_copies(seq);
}

void KvCache::grow_seq_len(int seq, int64_t n) {
  if (n <= seq_len(seq)) return;
  if (n > shape_.n_ctx) fail("kv cache: length ", n, " outside context of ", shape_.n_ctx);
  // Keep every block already stored (a batch stores all its positions before
  // its lengths are noted).
  extend(seq, blocks_for(n));
  seq_len_[seq] = n;
  trim_copies(seq);
}

void KvCache::extend(int seq, int64_t pb_end) {
  for (HeadTable& t : tables_[seq]) extend_table(t, seq, pb_end);
}

void KvCache::extend_table(HeadTable& t, int seq, int64_t pb_end) {
  int32_t next = t.pos.empty() ? static_cast<int32_t>(min_len_[seq] / kBlock) : t.pos.back() + 1;
  for (; next < pb_end; ++next) {
    t.ids.push_back(take_block());
    t.pos.push_back(next);
    t.win.push_back(-1);
  }
}

void KvCache::clear_seq(int seq) {
  checked(seq);
  truncate(seq, 0);
  seq_len_[seq] = 0;
  min_len_[seq] = 0;
}

void KvCache::clear() {
  for (int s = 0; s < shape_.n_seq; ++s) clear_seq(s);
}

void KvCache::share_prefix(int dst, int src, int64_t n) {
  checked(dst);
  checked(src);
  if (n < 0 || n > seq_len_[src])
    fail("kv cache: cannot share ", n, " positions of sequence ", src, ", which holds ", seq_len_[src]);
  if (n < min_len_[src])
    fail("kv cache: cannot share ", n, " positions of sequence ", src, ": it had blocks evicted up to position ",
         min_len_[src]);
  if (dst == src) {
    set_seq_len(dst, n);
    return;
  }
  clear_seq(dst);
  const int64_t nb = blocks_for(n);
  for (size_t s = 0; s < tables_[src].size(); ++s) {
    const HeadTable& from = tables_[src][s];
    HeadTable& to = tables_[dst][s];
    for (size_t i = 0; i < from.pos.size() && from.pos[i] < nb; ++i) {
      ++ref_[from.ids[i]];
      to.ids.push_back(from.ids[i]);
      to.pos.push_back(from.pos[i]);
      to.win.push_back(-1);
      if (from.win[i] < 0) continue;  // CQ: the copy is dst's own
      to.win.back() = take_copy();
      std::memcpy(copy_k(to.win.back()), copy_k(from.win[i]), copy_bytes() / 2);
      std::memcpy(copy_v(to.win.back()), copy_v(from.win[i]), copy_bytes() / 2);
    }
  }
  seq_len_[dst] = n;
  min_len_[dst] = min_len_[src];
  trim_copies(dst);
}

void KvCache::evict(int seq, std::span<const KvBlockRef> blocks) {
  checked(seq);
  const int64_t last_pb = blocks_for(seq_len_[seq]) - 1;  // the sequence's last position block: never evicted
  std::vector<std::vector<uint8_t>> drop(tables_[seq].size());
  for (const KvBlockRef& r : blocks) {
    if (r.layer < 0 || r.layer >= shape_.n_layer || r.head < 0 || r.head >= shape_.n_kv_head)
      fail("kv cache: evict: layer ", r.layer, " head ", r.head, " outside the cache");
    const size_t s = slice(r.layer, r.head);
    const HeadTable& t = tables_[seq][s];
    if (r.index < 0 || r.index >= static_cast<int64_t>(t.ids.size()))
      fail("kv cache: evict: block ", r.index, " outside the ", t.ids.size(), " blocks of layer ", r.layer, " head ",
           r.head);
    if (t.pos[static_cast<size_t>(r.index)] >= last_pb)
      fail("kv cache: evict: block ", r.index, " of layer ", r.layer, " head ", r.head,
           " holds the sequence's last positions");
    drop[s].resize(t.ids.size(), 0);
    if (drop[s][static_cast<size_t>(r.index)]) fail("kv cache: evict: block ", r.index, " named twice");
    drop[s][static_cast<size_t>(r.index)] = 1;
  }
  for (size_t s = 0; s < drop.size(); ++s) {
    if (drop[s].empty()) continue;
    HeadTable& t = tables_[seq][s];
    HeadTable kept;
    for (size_t i = 0; i < t.ids.size(); ++i) {
      if (!drop[s][i]) {
        kept.ids.push_back(t.ids[i]);
        kept.pos.push_back(t.pos[i]);
        kept.win.push_back(t.win[i]);
        continue;
      }
      drop_block(t.ids[i]);
      drop_copy(t.win[i]);
      min_len_[seq] = std::max<int64_t>(min_len_[seq], (int64_t{t.pos[i]} + 1) * kBlock);
    }
    t = std::move(kept);
  }
}

int64_t KvCache::blocks_needed(int seq, int64_t n) const {
  checked(seq);
  const int64_t len = seq_len_[seq];
  if (n <= len) return 0;
  const int64_t want = blocks_for(n);
  int64_t need = 0;
  for (const HeadTable& t : tables_[seq]) {
    const int64_t next = t.pos.empty() ? min_len_[seq] / kBlock : int64_t{t.pos.back()} + 1;
    need += std::max<int64_t>(0, want - next);
    // The next write lands in the last block when it is partly filled.
    if (len % kBlock != 0 && !t.ids.empty() && t.pos.back() == len / kBlock && ref_[t.ids.back()] > 1) ++need;
  }
  return need;
}

int64_t KvCache::blocks_held(std::span<const int> seqs) const {
  std::vector<uint8_t> seen(ref_.size(), 0);
  int64_t n = 0;
  for (int s : seqs)
    for (const HeadTable& t : tables_[checked(s)])
      for (int32_t b : t.ids)
        if (!seen[b]) {
          seen[b] = 1;
          ++n;
        }
  return n;
}

int64_t KvCache::bytes_held(std::span<const int> seqs) const {
  int64_t copies = 0;
  for (int s : seqs)
    for (const HeadTable& t : tables_[checked(s)])
      copies += std::count_if(t.win.begin(), t.win.end(), [](int32_t w) { return w >= 0; });
  return blocks_held(seqs) * static_cast<int64_t>(block_bytes()) + copies * static_cast<int64_t>(copy_bytes()) +
         static_cast<int64_t>(codebook_bytes());
}

}  // namespace kestrel
