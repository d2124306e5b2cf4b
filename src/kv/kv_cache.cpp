#include "kv/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/attention_set.h"
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

}  // namespace

KvCache::KvCache(KvShape shape, DType k_type, DType v_type, Isa isa, bool rotate, bool smooth_k)
    : shape_(shape), k_type_(k_type), v_type_(v_type), smooth_k_(smooth_k) {
  if (shape.n_layer <= 0 || shape.n_kv_head <= 0 || shape.head_dim <= 0 || shape.n_ctx <= 0 || shape.n_seq <= 0 ||
      shape.n_pool < 0)
    fail("kv cache: invalid shape (layers ", shape.n_layer, ", kv heads ", shape.n_kv_head, ", head dim ",
         shape.head_dim, ", ctx ", shape.n_ctx, ", seqs ", shape.n_seq, ", pool ", shape.n_pool, ")");
  quantize_k_ = checked_quantizer(k_type, shape.head_dim, isa, "keys");
  quantize_v_ = checked_quantizer(v_type, shape.head_dim, isa, "values");
  k_row_bytes_ = kestrel::row_bytes(k_type, shape.head_dim);
  v_row_bytes_ = kestrel::row_bytes(v_type, shape.head_dim);
  k_rot_ = rotate ? kernels::k_rotation_block(traits(k_type).block_size > 1, shape.head_dim) : 0;
  v_rot_ = rotate ? kernels::v_rotation_block(traits(v_type).block_size > 1, shape.head_dim) : 0;
  const int64_t n_blocks = shape.n_pool > 0 ? blocks_for(shape.n_pool) : shape.n_seq * blocks_for(shape.n_ctx);
  if (n_blocks > INT32_MAX) fail("kv cache: a pool of ", n_blocks, " blocks is too large");
  k_block_bytes_ = static_cast<size_t>(shape.n_layer) * shape.n_kv_head * kBlock * k_row_bytes_;
  v_block_bytes_ = static_cast<size_t>(shape.n_layer) * shape.n_kv_head * kBlock * v_row_bytes_;
  k_ = ZeroedPages(static_cast<size_t>(n_blocks) * k_block_bytes_);
  v_ = ZeroedPages(static_cast<size_t>(n_blocks) * v_block_bytes_);
  if (smooth_k) {
    if (traits(k_type).block_size == 1)
      fail("kv cache: smoothed keys (attn=sage over a quantized K) need a block-quantized K type (q8_0, q4_0, q4_1, "
           "q5_0, q5_1), not ", dtype_name(k_type));
    dequantize_k_ = kernels::quant_kernels(k_type, isa).dequantize_row;
    means_ = ZeroedPages(static_cast<size_t>(n_blocks) * shape.n_layer * shape.n_kv_head * shape.head_dim *
                         sizeof(uint16_t));
    mean_set_.assign(static_cast<size_t>(n_blocks) * shape.n_layer, 0);
  }
  ref_.assign(static_cast<size_t>(n_blocks), 0);
  // Taken from the back: block 0 first, so a lone sequence is laid out in order.
  free_.resize(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) free_[static_cast<size_t>(i)] = static_cast<int32_t>(n_blocks - 1 - i);
  table_.assign(shape.n_seq, {});
  seq_len_.assign(shape.n_seq, 0);
}

int KvCache::checked(int seq) const {
  if (seq < 0 || seq >= shape_.n_seq) fail("kv cache: sequence id ", seq, " outside [0, ", shape_.n_seq, ")");
  return seq;
}

size_t KvCache::block_offset(int32_t b, int layer, int head, size_t row_bytes) const {
  const size_t rows = static_cast<size_t>(layer) * shape_.n_kv_head + head;
  const size_t block_bytes = static_cast<size_t>(shape_.n_layer) * shape_.n_kv_head * kBlock * row_bytes;
  return static_cast<size_t>(b) * block_bytes + rows * kBlock * row_bytes;
}

int32_t KvCache::take_block() {
  if (free_.empty())
    fail("kv cache: out of blocks: all ", total_blocks(), " blocks of ", kBlock, " positions (",
         total_blocks() * kBlock, " positions) are in use");
  const int32_t b = free_.back();
  free_.pop_back();
  ref_[b] = 1;
  if (smooth_k_) std::fill_n(mean_set_.begin() + static_cast<ptrdiff_t>(b) * shape_.n_layer, shape_.n_layer, 0);
  return b;
}

void KvCache::drop_block(int32_t b) {
  if (--ref_[b] == 0) free_.push_back(b);
}

void KvCache::shrink_table(int seq, int64_t n_blocks) {
  auto& t = table_[seq];
  while (static_cast<int64_t>(t.size()) > n_blocks) {
    drop_block(t.back());
    t.pop_back();
  }
}

int32_t KvCache::writable_block(int seq, int64_t pos) {
  auto& t = table_[seq];
  const size_t i = static_cast<size_t>(pos / kBlock);
  while (t.size() <= i) t.push_back(take_block());
  const int32_t b = t[i];
  if (ref_[b] == 1) return b;
  // Shared: copy the whole block (every layer, the positions before pos are the
  // common prefix) and write into the copy. Rows are whole quant blocks, so
  // the bytes are the copy for every element type.
  const int32_t c = take_block();
  std::memcpy(k_.data() + static_cast<size_t>(c) * k_block_bytes_,
              k_.data() + static_cast<size_t>(b) * k_block_bytes_, k_block_bytes_);
  std::memcpy(v_.data() + static_cast<size_t>(c) * v_block_bytes_,
              v_.data() + static_cast<size_t>(b) * v_block_bytes_, v_block_bytes_);
  if (smooth_k_) {
    const size_t n = static_cast<size_t>(shape_.n_layer) * shape_.n_kv_head * shape_.head_dim;
    std::memcpy(mean_of(c, 0, 0), mean_of(b, 0, 0), n * sizeof(uint16_t));
    std::copy_n(mean_set_.begin() + static_cast<ptrdiff_t>(b) * shape_.n_layer, shape_.n_layer,
                mean_set_.begin() + static_cast<ptrdiff_t>(c) * shape_.n_layer);
  }
  drop_block(b);
  t[i] = c;
  return c;
}

void KvCache::store(int layer, int seq, int64_t pos, const float* k, const float* v) {
  checked(seq);
  if (pos < 0 || pos >= shape_.n_ctx) fail("kv cache: position ", pos, " outside context of ", shape_.n_ctx);
  if (layer < 0 || layer >= shape_.n_layer) fail("kv cache: layer ", layer, " outside [0, ", shape_.n_layer, ")");
  const int32_t b = writable_block(seq, pos);
  const int d = shape_.head_dim;
  const size_t row = static_cast<size_t>(pos % kBlock);
  thread_local std::vector<float> rk, rv;  // rotated (and smoothed) copies
  if (k_rot_ || smooth_k_) rk.assign(k, k + static_cast<size_t>(shape_.n_kv_head) * d);
  if (v_rot_) rv.assign(v, v + static_cast<size_t>(shape_.n_kv_head) * d);
  if (k_rot_)
    for (int h = 0; h < shape_.n_kv_head; ++h) kernels::hadamard_chunks(rk.data() + h * d, d, k_rot_);
  if (smooth_k_) {
    if (!mean_set_[static_cast<size_t>(b) * shape_.n_layer + layer]) set_means(seq, pos / kBlock, b, layer, rk.data());
    for (int h = 0; h < shape_.n_kv_head; ++h) {
      const uint16_t* m = mean_of(b, layer, h);
      for (int c = 0; c < d; ++c) rk[static_cast<size_t>(h) * d + c] -= fp16_to_f32(m[c]);
    }
  }
  for (int h = 0; h < shape_.n_kv_head; ++h) {
    const float* kh = (k_rot_ || smooth_k_) ? rk.data() + h * d : k + h * d;
    const float* vh = v + h * d;
    if (v_rot_) {
      kernels::hadamard_chunks(rv.data() + h * d, d, v_rot_);
      vh = rv.data() + h * d;
    }
    quantize_k_(kh, k_.data() + block_offset(b, layer, h, k_row_bytes_) + row * k_row_bytes_, d);
    quantize_v_(vh, v_.data() + block_offset(b, layer, h, v_row_bytes_) + row * v_row_bytes_, d);
  }
}

size_t KvCache::mean_index(int32_t b, int layer, int head) const {
  const size_t per_block = static_cast<size_t>(shape_.n_layer) * shape_.n_kv_head * shape_.head_dim;
  return static_cast<size_t>(b) * per_block + (static_cast<size_t>(layer) * shape_.n_kv_head + head) * shape_.head_dim;
}

uint16_t* KvCache::mean_of(int32_t b, int layer, int head) {
  return reinterpret_cast<uint16_t*>(means_.data()) + mean_index(b, layer, head);
}

void KvCache::set_means(int seq, int64_t i, int32_t b, int layer, const float* kh) {
  const int d = shape_.head_dim;
  const auto& t = table_[seq];
  std::vector<float> mean(static_cast<size_t>(d)), row(static_cast<size_t>(d));
  for (int h = 0; h < shape_.n_kv_head; ++h) {
    uint16_t* m = mean_of(b, layer, h);
    if (i == 0) {  // the sequence's first key
      for (int c = 0; c < d; ++c) m[c] = f32_to_fp16(kh[static_cast<size_t>(h) * d + c]);
      continue;
    }
    // The previous block is full: the mean of what it holds, in the stored space.
    const int32_t p = t[static_cast<size_t>(i - 1)];
    const uint8_t* rows = k_.data() + block_offset(p, layer, h, k_row_bytes_);
    const uint16_t* pm = mean_of(p, layer, h);
    std::fill(mean.begin(), mean.end(), 0.0f);
    for (int j = 0; j < kBlock; ++j) {
      dequantize_k_(rows + static_cast<size_t>(j) * k_row_bytes_, row.data(), d);
      for (int c = 0; c < d; ++c) mean[c] += row[c];
    }
    for (int c = 0; c < d; ++c) m[c] = f32_to_fp16(mean[c] / kBlock + fp16_to_f32(pm[c]));
  }
  mean_set_[static_cast<size_t>(b) * shape_.n_layer + layer] = 1;
}

KvHeadView KvCache::view(int layer, int seq, int head) const {
  const size_t mean_stride = static_cast<size_t>(shape_.n_layer) * shape_.n_kv_head * shape_.head_dim;
  return KvHeadView{k_.data() + block_offset(0, layer, head, k_row_bytes_),
                    v_.data() + block_offset(0, layer, head, v_row_bytes_),
                    table_[seq].data(),
                    static_cast<int64_t>(k_block_bytes_),
                    static_cast<int64_t>(v_block_bytes_),
                    k_type_,
                    v_type_,
                    k_rot_,
                    v_rot_,
                    smooth_k_ ? reinterpret_cast<const uint16_t*>(means_.data()) + mean_index(0, layer, head) : nullptr,
                    smooth_k_ ? static_cast<int64_t>(mean_stride) : 0};
}

void KvCache::set_seq_len(int seq, int64_t n) {
  checked(seq);
  if (n < 0 || n > shape_.n_ctx) fail("kv cache: length ", n, " outside context of ", shape_.n_ctx);
  auto& t = table_[seq];
  const int64_t want = blocks_for(n);
  if (want < static_cast<int64_t>(t.size())) shrink_table(seq, want);
  while (static_cast<int64_t>(t.size()) < want) t.push_back(take_block());
  seq_len_[seq] = n;
}

void KvCache::clear_seq(int seq) {
  checked(seq);
  shrink_table(seq, 0);
  seq_len_[seq] = 0;
}

void KvCache::clear() {
  for (int s = 0; s < shape_.n_seq; ++s) clear_seq(s);
}

void KvCache::share_prefix(int dst, int src, int64_t n) {
  checked(dst);
  checked(src);
  if (n < 0 || n > seq_len_[src])
    fail("kv cache: cannot share ", n, " positions of sequence ", src, ", which holds ", seq_len_[src]);
  if (dst == src) {
    set_seq_len(dst, n);
    return;
  }
  clear_seq(dst);
  const int64_t nb = blocks_for(n);
  auto& t = table_[dst];
  for (int64_t i = 0; i < nb; ++i) {
    const int32_t b = table_[src][static_cast<size_t>(i)];
    ++ref_[b];
    t.push_back(b);
  }
  seq_len_[dst] = n;
}

int64_t KvCache::blocks_needed(int seq, int64_t n) const {
  checked(seq);
  const int64_t len = seq_len_[seq];
  if (n <= len) return 0;
  const auto& t = table_[seq];
  int64_t need = std::max<int64_t>(0, blocks_for(n) - static_cast<int64_t>(t.size()));
  // The next write lands in the last block when it is partly filled.
  if (len % kBlock != 0 && ref_[t[static_cast<size_t>(len / kBlock)]] > 1) ++need;
  return need;
}

int64_t KvCache::blocks_held(std::span<const int> seqs) const {
  std::vector<uint8_t> seen(ref_.size(), 0);
  int64_t n = 0;
  for (int s : seqs)
    for (int32_t b : table_[checked(s)])
      if (!seen[b]) {
        seen[b] = 1;
        ++n;
      }
  return n;
}

}  // namespace kestrel
