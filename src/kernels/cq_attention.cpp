#include "kernels/cq_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/cq_whiten.h"

namespace kestrel::kernels {
namespace {

const uint8_t* code_row(const void* base, const int32_t* ids, int64_t stride, int64_t block_len, int64_t r,
                        int64_t row_bytes) {
  return static_cast<const uint8_t*>(base) + ids[r / block_len] * stride + (r % block_len) * row_bytes;
}

const uint16_t* copy_row(const uint16_t* base, const CqRows& cq, int64_t block_len, int64_t r, int d) {
  return base + cq.win_ids[r / block_len] * cq.win_stride + (r % block_len) * d;
}

// The centroids of a codebook, F16 [d / c][w][n_codes] (w = c stages; planar,
// what the score table reads), as F32 [d / c][n_codes][w]: a code's w values
// next to each other, one copy per (row, group) when rows are decoded. Widened
// into per-thread scratch, which decoded_book keeps for the next prompt tile.
// Whitened centroids (`whitening` set, one W per block of w channels) come
// back to C = W^-1 E here, once per code: W^-1 is linear, so a block's stages
// may be mapped one by one and summed after.
void code_major(const uint16_t* planar, const float* whitening, int d, int c, int stages, int n_codes,
                std::vector<float>& out) {
  const int w = c * stages, groups = d / c;
  out.resize(static_cast<size_t>(groups) * w * n_codes);
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < w; ++i)
      for (int code = 0; code < n_codes; ++code)
        out[(static_cast<size_t>(g) * n_codes + code) * w + i] =
            fp16_to_f32(planar[(static_cast<size_t>(g) * w + i) * n_codes + code]);
  if (!whitening) return;
  for (int g = 0; g < groups; ++g)
    for (int code = 0; code < n_codes; ++code) {
      float* x = out.data() + (static_cast<size_t>(g) * n_codes + code) * w;
      cq_unwhiten(whitening + static_cast<size_t>(g / stages) * w * w, w, x, x);
    }
}

void decode_codes(const uint8_t* codes, const float* by_code, int d, int c, int stages, int n_codes, float* row) {
  const int w = c * stages;
  for (int g = 0; g < d / c; ++g) {
    const float* x = by_code + (static_cast<size_t>(g) * n_codes + codes[g]) * w;
    float* block = row + (g / stages) * w;
    if (g % stages == 0)
      std::memcpy(block, x, sizeof(float) * w);
    else
      for (int i = 0; i < w; ++i) block[i] += x[i];
  }
}

// fn(r0, split, r1) for each logical block [r0, r1) of rows [0, n) in order:
// a query over n rows reads [r0, split) from their codes and [split, r1) from
// their F16 copies (cq_first_copied_row).
template <class Fn>
void for_each_block(const CqRows& cq, int64_t block_len, int64_t n, Fn&& fn) {
  for (int64_t b = 0; b * block_len < n; ++b) {
    const int64_t r0 = b * block_len, r1 = std::min(n, r0 + block_len);
    fn(r0, std::min(r1, cq_first_copied_row(cq, block_len, b, n)), r1);
  }
}

// A book's centroids as code_major gives them, kept by a thread for the next
// tile: with residual stages and a whitening, code_major costs n_codes stages
// triangular solves of c stages channels per group (a 64-channel head in 8
// stages: 4 M multiply-adds for K and V each), once per tile of 64 query rows.
// Kept only under a serial that promises the books did not change.
struct DecodedBook {
  uint64_t serial = 0;
  const uint16_t* centroids = nullptr;
  std::vector<float> by_code;
};

const std::vector<float>& decoded_book(DecodedBook& kept, uint64_t serial, const uint16_t* planar,
                                       const float* whitening, int d, int c, int stages, int n_codes) {
  if (serial != 0 && kept.serial == serial && kept.centroids == planar) return kept.by_code;
  code_major(planar, whitening, d, c, stages, n_codes, kept.by_code);
  kept.serial = serial;
  kept.centroids = planar;
  return kept.by_code;
}

}  // namespace

void decode_cq_rows(const KvRows& kv, int64_t n, int d, float* k, float* v) {
  const CqRows& cq = kv.cq;
  thread_local DecodedBook k_kept, v_kept;
  const float* k_by_code = nullptr;
  const float* v_by_code = nullptr;
  bool coded = false;
  const int64_t bl = kv.block_len;
  for_each_block(cq, bl, n, [&](int64_t r0, int64_t split, int64_t r1) {
    if (split > r0 && !coded) {
      coded = true;
      k_by_code =
          decoded_book(k_kept, cq.books_serial, cq.k_centroids, cq.k_whitening, d, cq.k_c, cq.k_stages, cq.n_codes)
              .data();
      v_by_code =
          decoded_book(v_kept, cq.books_serial, cq.v_centroids, cq.v_whitening, d, cq.v_c, cq.v_stages, cq.n_codes)
              .data();
    }
    for (int64_t r = r0; r < split; ++r) {
      decode_codes(code_row(kv.k, kv.ids, kv.stride_bytes, bl, r, d / cq.k_c), k_by_code, d, cq.k_c, cq.k_stages,
                   cq.n_codes, k + r * d);
      decode_codes(code_row(kv.v, kv.ids, kv.v_stride_bytes, bl, r, d / cq.v_c), v_by_code, d, cq.v_c, cq.v_stages,
                   cq.n_codes, v + r * d);
    }
    for (int64_t r = split; r < r1; ++r) {
      const uint16_t* kr = copy_row(cq.win_k, cq, bl, r, d);
      const uint16_t* vr = copy_row(cq.win_v, cq, bl, r, d);
      for (int c = 0; c < d; ++c) {
        k[r * d + c] = fp16_to_f32(kr[c]);
        v[r * d + c] = fp16_to_f32(vr[c]);
      }
    }
  });
}

void attend_cq(const CqKernels& ck, const KvRows& kv, int64_t n, int d, const float* q, float scale, float* out) {
  const CqRows& cq = kv.cq;
  const int k_groups = d / cq.k_c;
  const int v_groups = d / cq.v_c;
  const int kw = cq.k_c * cq.k_stages, vw = cq.v_c * cq.v_stages;  // channels a centroid covers
  thread_local std::vector<float> qs, qw, q_stages, table, s, buckets, acc, out_stages;
  qs.resize(static_cast<size_t>(d));
  for (int c = 0; c < d; ++c) qs[c] = q[c] * scale;
  // Whitened keys: q . C = (W^-T q) . E, the table built from the mapped query.
  const float* q_table = qs.data();
  if (cq.k_whitening) {
    qw = qs;
    cq_unwhiten_transposed_row(cq.k_whitening, d, kw, qw.data());
    q_table = qw.data();
  }
  // Residual stages: group g's centroids cover its block's kw channels, so the
  // table kernel reads the query as d stages channels, each block's part once
  // per stage (T[g][code] = q_block . C_g[code]; the scores then add a block's
  // stages as they add groups).
  if (cq.k_stages > 1) {
    q_stages.resize(static_cast<size_t>(d) * cq.k_stages);
    for (int g = 0; g < k_groups; ++g)
      std::memcpy(q_stages.data() + static_cast<size_t>(g) * kw, q_table + (g / cq.k_stages) * kw, sizeof(float) * kw);
    q_table = q_stages.data();
  }
  // The table (and V's buckets below) only when some row is read from its
  // codes: a context inside the F16 window has none.
  bool coded = false;
  s.resize(static_cast<size_t>(std::max<int64_t>(n, 1)));
  const int64_t bl = kv.block_len;
  for_each_block(cq, bl, n, [&](int64_t r0, int64_t split, int64_t r1) {
    if (split > r0 && !coded) {
      coded = true;
      table.resize(static_cast<size_t>(k_groups) * cq.n_codes);
      ck.score_table(q_table, cq.k_centroids, d * cq.k_stages, kw, cq.n_codes, table.data());
    }
    if (split > r0)
      ck.scores(table.data(), code_row(kv.k, kv.ids, kv.stride_bytes, bl, r0, k_groups), split - r0, k_groups,
                cq.n_codes, s.data() + r0);
    for (int64_t r = split; r < r1; ++r) s[r] = ck.copy_dot(qs.data(), copy_row(cq.win_k, cq, bl, r, d), d);
  });
  float max = -INFINITY;
  for (int64_t r = 0; r < n; ++r) max = std::max(max, s[r]);
  float sum = 0.0f;
  for (int64_t r = 0; r < n; ++r) {
    s[r] = std::exp(s[r] - max);
    sum += s[r];
  }
  if (coded) buckets.assign(static_cast<size_t>(v_groups) * cq.n_codes, 0.0f);
  acc.assign(static_cast<size_t>(d), 0.0f);
  for_each_block(cq, bl, n, [&](int64_t r0, int64_t split, int64_t r1) {
    if (split > r0)
      ck.add_buckets(s.data() + r0, code_row(kv.v, kv.ids, kv.v_stride_bytes, bl, r0, v_groups), split - r0, v_groups,
                     cq.n_codes, buckets.data());
    for (int64_t r = split; r < r1; ++r) ck.copy_axpy(s[r], copy_row(cq.win_v, cq, bl, r, d), d, acc.data());
  });
  if (coded) {
    if (cq.v_stages == 1)
      ck.buckets_out(buckets.data(), cq.v_centroids, d, cq.v_c, cq.n_codes, out);
    else {  // each stage's output over its block, then a block's stages summed in order
      out_stages.resize(static_cast<size_t>(d) * cq.v_stages);
      ck.buckets_out(buckets.data(), cq.v_centroids, d * cq.v_stages, vw, cq.n_codes, out_stages.data());
      for (int g = 0; g < v_groups; ++g) {
        const float* x = out_stages.data() + static_cast<size_t>(g) * vw;
        float* block = out + (g / cq.v_stages) * vw;
        for (int i = 0; i < vw; ++i) block[i] = g % cq.v_stages == 0 ? x[i] : block[i] + x[i];
      }
    }
    if (cq.v_whitening) cq_unwhiten_row(cq.v_whitening, d, vw, out);  // sum p C = W^-1 sum p E
  } else
    std::fill(out, out + d, 0.0f);
  const float inv = n > 0 ? 1.0f / sum : 0.0f;
  for (int c = 0; c < d; ++c) out[c] = (out[c] + acc[c]) * inv;
}

}  // namespace kestrel::kernels
