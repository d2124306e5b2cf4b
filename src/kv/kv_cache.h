#pragma once
// The KV cache: keys and values of every layer for up to n_seq sequences of up
// to n_ctx positions each. Layout [layer][seq][kv_head][pos][head_dim], so one
// head's keys are contiguous rows (what the attention loop streams). Storage is
// F16 (llama.cpp's default, and what our logits are compared against) or F32.
// A paged or quantized cache replaces this class behind the same calls.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kestrel {

enum class KvType { F16, F32 };

struct KvShape {
  int n_layer = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  int64_t n_ctx = 0;  // positions per sequence
  int n_seq = 1;
};

class KvCache {
 public:
  KvCache(KvShape shape, KvType type);

  const KvShape& shape() const { return shape_; }
  KvType type() const { return type_; }
  size_t bytes() const { return k_.size() + v_.size(); }
  size_t element_bytes() const { return type_ == KvType::F16 ? 2 : 4; }

  // Stores one token's keys and values ([n_kv_head * head_dim] each) at pos.
  void store(int layer, int seq, int64_t pos, const float* k, const float* v);

  // One head's rows for positions [0, n_ctx): type F16 (uint16_t) or F32.
  const void* k_rows(int layer, int seq, int head) const { return k_.data() + offset(layer, seq, head); }
  const void* v_rows(int layer, int seq, int head) const { return v_.data() + offset(layer, seq, head); }

  // Number of positions of a sequence that hold valid entries (the runtime keeps it).
  int64_t seq_len(int seq) const { return seq_len_[seq]; }
  void set_seq_len(int seq, int64_t n);
  void clear();

 private:
  size_t offset(int layer, int seq, int head) const;

  KvShape shape_;
  KvType type_;
  std::vector<uint8_t> k_, v_;
  std::vector<int64_t> seq_len_;
};

}  // namespace kestrel
