#pragma once
// The walk of the INT8 prompt tiles (attn=sage and attn=int8 over an F16
// cache; kernels/avx2/attention_int8_avx2.cpp, kernels/avx512/
// attention_int8_avx512.cpp) over a sequence's KV blocks. No intrinsics: each
// SIMD translation unit instantiates it with its own row and block types, in
// an anonymous namespace (see kernels/avx2/avx2-inl.h for why).
//
// Every row of a tile gets the bits of the row kernel over its own n_visible
// (the twins' attend_tile_*_f16 are the row twins, row by row). A KV block is
// quantized once for all the rows that see it whole, and again for each
// shorter count of rows that some row sees (the diagonal of a causal prompt:
// the twin's partial block uses the rows it holds). The rows that see the
// same count go through the block TileR at a time.
#include <algorithm>
#include <cstdint>

#include "kernels/attention_kernels.h"
#include "kernels/attention_tiled.h"

namespace kestrel::kernels {
namespace {

// run.template operator()<n>(q, st) for the n (1..R) rows gathered.
template <int R, class Run, class Row, class State>
void run_gathered(Run& run, int n, const Row* const* q, State* const* st) {
  if constexpr (R > 0) {
    if (n == R) return run.template operator()<R>(q, st);
    run_gathered<R - 1>(run, n, q, st);
  }
}

// qr[r], st[r]: row r's quantized query and softmax state, ready.
// prepare(k, v, cnt, avail) quantizes the block's first cnt rows (avail: the
// rows any query row sees, called first for each block with cnt == avail);
// run.template operator()<R>(q, st) takes R rows through what prepare left.
template <int TileR, class Row, class State, class Prepare, class RunRows>
void walk_int8_tile(const KvBlocks<uint16_t>& kv, const TileRows& rows, const Row* qr, State* st, Prepare&& prepare,
                    RunRows&& run) {
  int64_t n_max = 0;
  for (int r = 0; r < rows.n; ++r) n_max = std::max(n_max, rows.n_visible[r]);
  const Row* q[TileR];
  State* s[TileR];
  for (int64_t b = 0, first = 0; first < n_max; ++b, first += kv.block_len) {
    const uint16_t* k = kv.k + kv.ids[b] * kv.stride;
    const uint16_t* v = kv.v + kv.ids[b] * kv.stride;
    const int avail = static_cast<int>(std::min(kv.block_len, n_max - first));
    int cnt[kMaxTileRows];
    for (int r = 0; r < rows.n; ++r)
      cnt[r] = static_cast<int>(std::clamp<int64_t>(rows.n_visible[r] - first, 0, avail));
    for (int want = avail; want > 0;) {
      prepare(k, v, want, avail);
      int n = 0, next = 0;
      for (int r = 0; r < rows.n; ++r) {
        if (cnt[r] < want) {
          next = std::max(next, cnt[r]);
          continue;
        }
        if (cnt[r] > want) continue;
        q[n] = &qr[r];
        s[n++] = &st[r];
        if (n == TileR) {
          run.template operator()<TileR>(q, s);
          n = 0;
        }
      }
      run_gathered<TileR - 1>(run, n, q, s);
      want = next;
    }
  }
}

// The whole tile: each row's query quantized (quantize_q(q, d, &row)) and its
// state started (State::acc in scratch, zero; tile_scratch_floats(d) >=
// kMaxTileRows * d), the walk, each row finished (finish(state, d, out)).
template <int TileR, class Row, class State, class QuantizeQ, class Finish, class Prepare, class RunRows>
void run_int8_tile(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float* scratch, QuantizeQ&& quantize_q,
                   Finish&& finish, Prepare&& prepare, RunRows&& run) {
  thread_local Row qr[kMaxTileRows];
  State st[kMaxTileRows];
  for (int r = 0; r < rows.n; ++r) {
    quantize_q(rows.q[r], d, &qr[r]);
    st[r].acc = scratch + static_cast<size_t>(r) * d;
    std::fill(st[r].acc, st[r].acc + d, 0.0f);
  }
  walk_int8_tile<TileR>(kv, rows, qr, st, prepare, run);
  for (int r = 0; r < rows.n; ++r) finish(st[r], d, rows.out[r]);
}

}  // namespace
}  // namespace kestrel::kernels
