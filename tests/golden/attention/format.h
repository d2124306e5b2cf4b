#pragma once
// Real attention inputs captured from a model (the golden files next to this
// header; made by tests/golden/make_attention_capture.sh): for a few layers,
// post-RoPE query rows and the keys and values of some KV heads, at every
// position of a prompt (repository text: docs, README, sources; never the
// evaluation text). Stored as F16, little-endian.
//
// Version 1 (smollm2_qkv.bin): one query head per KV head (head i reads KV
// head i), a query row at every position:
//   header: char magic[4] = "KQKV", int32 version = 1, n_layers, n_pos,
//           n_heads, head_dim, then n_layers int32 layer ids
//   per layer: Q [n_pos][n_heads][head_dim], K [n_pos][n_heads][head_dim],
//              V [n_pos][n_heads][head_dim]
//
// Version 2 (the long captures): K and V at every position but only of the
// stored KV heads; query rows only at a chosen subset of positions and of
// query heads, so that an 8k capture stays small:
//   header: char magic[4] = "KQKV", int32 version = 2, n_layers, n_pos,
//           head_dim, model_n_head, model_n_kv_head (query head h reads KV head
//           h / (model_n_head / model_n_kv_head)), n_q_heads, n_kv_heads,
//           n_q_pos, then int32 arrays: layer ids [n_layers], query head ids
//           [n_q_heads], KV head ids [n_kv_heads] (every query head's KV head
//           is among them), query positions [n_q_pos] (ascending, < n_pos)
//   per layer: Q [n_q_pos][n_q_heads][head_dim], K
//   [n_pos][n_kv_heads][head_dim],
//              V [n_pos][n_kv_heads][head_dim]
// A version 1 file reads as version 2 with every position a query row and
// query head i = KV head i (model_n_head = model_n_kv_head = n_heads).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"

namespace kestrel::testing {

struct QkvLayer {
  int layer = 0;
  std::vector<float> q;     // [n_q_pos][n_q_heads][head_dim], F16 values widened
  std::vector<float> k, v;  // [n_pos][n_heads][head_dim]
};

struct QkvCapture {
  int n_pos = 0;
  int n_heads = 0;  // stored KV heads (= kv_heads.size())
  int head_dim = 0;
  int model_n_head = 0, model_n_kv_head = 0;
  std::vector<int> q_heads;   // model query head of each stored query head
  std::vector<int> kv_heads;  // model KV head of each stored KV head
  std::vector<int> q_pos;     // position of each stored query row, ascending
  std::vector<QkvLayer> layers;

  int n_q_heads() const { return static_cast<int>(q_heads.size()); }
  int n_q_rows() const { return static_cast<int>(q_pos.size()); }
  // Stored KV head (index into kv_heads) that stored query head qi reads.
  int kv_of(int qi) const {
    const int kvh = q_heads[static_cast<size_t>(qi)] / (model_n_head / model_n_kv_head);
    return static_cast<int>(std::find(kv_heads.begin(), kv_heads.end(), kvh) - kv_heads.begin());
  }
  // Query row `row` (index into q_pos; in a version 1 file, the position) of
  // stored query head qi.
  const float* q(int l, int row, int qi) const { return &layers[l].q[(size_t(row) * q_heads.size() + qi) * head_dim]; }
  const float* k(int l, int pos, int h) const { return &layers[l].k[(size_t(pos) * n_heads + h) * head_dim]; }
  const float* v(int l, int pos, int h) const { return &layers[l].v[(size_t(pos) * n_heads + h) * head_dim]; }
};

namespace detail {
inline void write_f16(std::ofstream& out, const std::vector<float>& a) {
  std::vector<uint16_t> h(a.size());
  for (size_t i = 0; i < a.size(); ++i) h[i] = f32_to_fp16(a[i]);
  out.write(reinterpret_cast<const char*>(h.data()), static_cast<std::streamsize>(h.size() * 2));
}
inline void read_f16(std::ifstream& in, size_t n, std::vector<float>& a) {
  std::vector<uint16_t> h(n);
  in.read(reinterpret_cast<char*>(h.data()), static_cast<std::streamsize>(n * 2));
  a.resize(n);
  for (size_t i = 0; i < n; ++i) a[i] = fp16_to_f32(h[i]);
}
inline void write_ints(std::ofstream& out, const std::vector<int>& a) {
  for (int x : a) {
    const int32_t v = x;
    out.write(reinterpret_cast<const char*>(&v), 4);
  }
}
inline std::vector<int> read_ints(std::ifstream& in, int n) {
  std::vector<int32_t> a(static_cast<size_t>(n));
  in.read(reinterpret_cast<char*>(a.data()), static_cast<std::streamsize>(a.size() * 4));
  return std::vector<int>(a.begin(), a.end());
}
}  // namespace detail

// Writes version 1 when the capture is one (every position a query row, query
// head i = KV head i, group 1), else version 2.
inline void write_qkv(const std::string& path, const QkvCapture& c) {
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("cannot write ", path);
  const int n_l = static_cast<int>(c.layers.size());
  const bool v1 = c.model_n_head == 0;  // a capture built the version 1 way (fields left unset)
  out.write("KQKV", 4);
  std::vector<int> layer_ids;
  for (const auto& l : c.layers) layer_ids.push_back(l.layer);
  if (v1) {
    detail::write_ints(out, {1, n_l, c.n_pos, c.n_heads, c.head_dim});
  } else {
    detail::write_ints(
        out, {2, n_l, c.n_pos, c.head_dim, c.model_n_head, c.model_n_kv_head, c.n_q_heads(), c.n_heads, c.n_q_rows()});
  }
  detail::write_ints(out, layer_ids);
  if (!v1) {
    detail::write_ints(out, c.q_heads);
    detail::write_ints(out, c.kv_heads);
    detail::write_ints(out, c.q_pos);
  }
  for (const auto& l : c.layers)
    for (const auto* a : {&l.q, &l.k, &l.v}) detail::write_f16(out, *a);
  if (!out) fail("cannot write ", path);
}

inline QkvCapture read_qkv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open ", path);
  char magic[4];
  int32_t version = 0;
  in.read(magic, 4);
  in.read(reinterpret_cast<char*>(&version), 4);
  if (!in || std::memcmp(magic, "KQKV", 4) != 0 || (version != 1 && version != 2))
    fail(path, ": not a KQKV v1 or v2 capture");
  QkvCapture c;
  int n_layers = 0, n_q_heads = 0, n_q_pos = 0;
  if (version == 1) {
    const std::vector<int> h = detail::read_ints(in, 4);
    n_layers = h[0];
    c.n_pos = h[1];
    c.n_heads = h[2];
    c.head_dim = h[3];
    c.model_n_head = c.model_n_kv_head = n_q_heads = c.n_heads;
    n_q_pos = c.n_pos;
  } else {
    const std::vector<int> h = detail::read_ints(in, 8);
    n_layers = h[0];
    c.n_pos = h[1];
    c.head_dim = h[2];
    c.model_n_head = h[3];
    c.model_n_kv_head = h[4];
    n_q_heads = h[5];
    c.n_heads = h[6];
    n_q_pos = h[7];
  }
  if (!in || n_layers < 0 || c.n_pos <= 0 || c.head_dim <= 0 || c.n_heads <= 0 || n_q_heads <= 0 || n_q_pos <= 0 ||
      c.model_n_kv_head <= 0 || c.model_n_head % c.model_n_kv_head != 0)
    fail(path, ": bad KQKV header");
  c.layers.resize(static_cast<size_t>(n_layers));
  const std::vector<int> layer_ids = detail::read_ints(in, n_layers);
  for (int i = 0; i < n_layers; ++i) c.layers[i].layer = layer_ids[i];
  if (version == 1) {
    for (int i = 0; i < c.n_heads; ++i) c.q_heads.push_back(i), c.kv_heads.push_back(i);
    for (int p = 0; p < c.n_pos; ++p) c.q_pos.push_back(p);
  } else {
    c.q_heads = detail::read_ints(in, n_q_heads);
    c.kv_heads = detail::read_ints(in, c.n_heads);
    c.q_pos = detail::read_ints(in, n_q_pos);
    for (int qi = 0; qi < n_q_heads; ++qi)
      if (c.kv_of(qi) >= c.n_heads) fail(path, ": query head ", c.q_heads[qi], " reads a KV head not stored");
    for (int r = 0; r < n_q_pos; ++r)
      if (c.q_pos[r] < 0 || c.q_pos[r] >= c.n_pos || (r > 0 && c.q_pos[r] <= c.q_pos[r - 1]))
        fail(path, ": query positions not ascending inside [0, ", c.n_pos, ")");
  }
  const size_t nq = size_t(n_q_pos) * n_q_heads * c.head_dim, nkv = size_t(c.n_pos) * c.n_heads * c.head_dim;
  for (auto& l : c.layers) {
    detail::read_f16(in, nq, l.q);
    detail::read_f16(in, nkv, l.k);
    detail::read_f16(in, nkv, l.v);
  }
  if (!in) fail(path, ": truncated");
  return c;
}

}  // namespace kestrel::testing
