#pragma once
// Real attention inputs captured from SmolLM2-135M-Instruct Q4_1 (the golden
// file smollm2_qkv.bin next to this header; made by
// tests/golden/make_attention_capture.sh): for a few layers, the post-RoPE
// query rows of one head per KV group and that group's keys and values, at
// every position of a prompt (the repository's docs/architecture.md, not the
// evaluation text). Stored as F16, little-endian:
//   header: char magic[4] = "KQKV", int32 version = 1, n_layers, n_pos,
//           n_heads (captured query heads = KV heads, head i reads KV head i),
//           head_dim, then n_layers int32 layer ids
//   per layer: Q [n_pos][n_heads][head_dim], K [n_pos][n_heads][head_dim],
//              V [n_pos][n_heads][head_dim]
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
  std::vector<float> q, k, v;  // [n_pos][n_heads][head_dim], F16 values widened
};

struct QkvCapture {
  int n_pos = 0, n_heads = 0, head_dim = 0;
  std::vector<QkvLayer> layers;
  const float* q(int l, int pos, int h) const { return &layers[l].q[(size_t(pos) * n_heads + h) * head_dim]; }
  const float* k(int l, int pos, int h) const { return &layers[l].k[(size_t(pos) * n_heads + h) * head_dim]; }
  const float* v(int l, int pos, int h) const { return &layers[l].v[(size_t(pos) * n_heads + h) * head_dim]; }
};

inline void write_qkv(const std::string& path, const QkvCapture& c) {
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("cannot write ", path);
  const int32_t hdr[5] = {1, static_cast<int32_t>(c.layers.size()), c.n_pos, c.n_heads, c.head_dim};
  out.write("KQKV", 4);
  out.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
  for (const auto& l : c.layers) out.write(reinterpret_cast<const char*>(&l.layer), 4);
  for (const auto& l : c.layers)
    for (const auto* a : {&l.q, &l.k, &l.v})
      for (float x : *a) {
        const uint16_t h = f32_to_fp16(x);
        out.write(reinterpret_cast<const char*>(&h), 2);
      }
}

inline QkvCapture read_qkv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open ", path);
  char magic[4];
  int32_t hdr[5];
  in.read(magic, 4);
  in.read(reinterpret_cast<char*>(hdr), sizeof hdr);
  if (!in || std::memcmp(magic, "KQKV", 4) != 0 || hdr[0] != 1) fail(path, ": not a KQKV v1 capture");
  QkvCapture c;
  c.n_pos = hdr[2];
  c.n_heads = hdr[3];
  c.head_dim = hdr[4];
  c.layers.resize(static_cast<size_t>(hdr[1]));
  for (auto& l : c.layers) in.read(reinterpret_cast<char*>(&l.layer), 4);
  const size_t n = size_t(c.n_pos) * c.n_heads * c.head_dim;
  for (auto& l : c.layers)
    for (auto* a : {&l.q, &l.k, &l.v}) {
      std::vector<uint16_t> h(n);
      in.read(reinterpret_cast<char*>(h.data()), static_cast<std::streamsize>(n * 2));
      a->resize(n);
      for (size_t i = 0; i < n; ++i) (*a)[i] = fp16_to_f32(h[i]);
    }
  if (!in) fail(path, ": truncated");
  return c;
}

}  // namespace kestrel::testing
