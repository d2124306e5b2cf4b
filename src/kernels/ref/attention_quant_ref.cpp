// Scalar twin of the attention over quantized (or mixed) KV caches: numerics in
// kernels/attention_quant.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "kernels/attention_quant.h"
#include "kernels/blocks.h"
#include "kernels/f32_kernels.h"

namespace kestrel::kernels {

KvQuantBlocks quant_rows(const KvRows& r, Isa isa) {
  const QuantKernels& kq = quant_kernels(r.k_type, isa);
  const QuantKernels& vq = quant_kernels(r.v_type, isa);
  return KvQuantBlocks{static_cast<const uint8_t*>(r.k),
                       static_cast<const uint8_t*>(r.v),
                       r.ids,
                       r.stride_bytes,
                       r.v_stride_bytes,
                       r.block_len,
                       r.k_type,
                       r.v_type,
                       quant_kernels(kq.vec_dot_type, isa).quantize_row,
                       kq.vec_dot,
                       kq.dequantize_row,
                       vq.dequantize_row,
                       static_cast<const uint16_t*>(r.k_mean),
                       r.mean_stride,
                       r.mean_id_div};
}

void gather_kv_tile(const KvQuantBlocks& kv, int64_t k0, int nk, int d, float* kt, float* vt) {
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d)), vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  float mean[512];  // the current block's mean key, widened once per block
  int64_t mean_block = -1;
  gather_tile_rows(k0, nk, d, kt, vt, [&](int64_t pos, float* key, float* value) {
    const int64_t b = kv.ids[pos / kv.block_len], r = pos % kv.block_len;
    kv.k_to_float(kv.k + b * kv.k_stride + r * kr, key, d);
    if (kv.k_mean) {  // smoothed keys: the key is what was stored plus its block's mean
      if (pos / kv.block_len != mean_block) {
        mean_block = pos / kv.block_len;
        const uint16_t* m = block_mean(kv, mean_block);
        for (int c = 0; c < d; ++c) mean[c] = fp16_to_f32(m[c]);
      }
      for (int c = 0; c < d; ++c) key[c] += mean[c];
    }
    kv.v_to_float(kv.v + b * kv.v_stride + r * vr, value, d);
  });
}

namespace ref {
namespace {

inline float round_f16(float x) { return fp16_to_f32(f32_to_fp16(x)); }

}  // namespace

void attend_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  alignas(64) uint8_t qq[512 * sizeof(float)];  // q as K's vec_dot type: at most F32
  float acc[512], vrow[512];
  kv.q_to_vec_dot(q, qq, d);
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d));
  const int64_t vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  const bool v16 = kv.v_type == DType::F16;  // ggml keeps the V sum in F16 then
  std::fill(acc, acc + d, 0.0f);
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const auto [k, v, rows] = block_rows(kv, b, first, n);
    for (int64_t j = 0; j < rows; ++j) {
      const float s = kv.k_vec_dot(d, k + j * kr, qq) * scale;
      float ms = 1.0f, vs = 1.0f;
      if (s > max) {
        ms = std::exp(max - s);
        max = s;
        for (int i = 0; i < d; ++i) acc[i] = v16 ? round_f16(acc[i] * ms) : acc[i] * ms;
      } else {
        vs = std::exp(s - max);
      }
      kv.v_to_float(v + j * vr, vrow, d);
      for (int i = 0; i < d; ++i) {
        const float a = std::fma(vrow[i], vs, acc[i]);
        acc[i] = v16 ? round_f16(a) : a;
      }
      sum = sum * ms + vs;
    }
  }
  const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
  for (int i = 0; i < d; ++i) out[i] = acc[i] * inv;
}

namespace {

// The block loop of the sage and int8 twins: per KV block, the scores of the
// (smoothed) keys, s[j] = (k_j . q + q . m_b) * scale, then `step` folds the
// block into the running acc, max and sum (the block-wise softmax and P.V).
template <class Step>
void smoothed_blocks(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out, Step step) {
  alignas(64) uint8_t qq[512 * sizeof(float)];
  float acc[512], s[64];
  kv.q_to_vec_dot(q, qq, d);
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d));
  const int64_t vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  std::fill(acc, acc + d, 0.0f);
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const auto [k, v, rows] = block_rows(kv, b, first, n);
    const float qm = kv.k_mean ? mean_dot(kv, b, q, d) : 0.0f;
    for (int j = 0; j < rows; ++j) s[j] = (kv.k_vec_dot(d, k + j * kr, qq) + qm) * scale;
    step(s, rows, v, vr, acc, max, sum);
  }
  const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
  for (int c = 0; c < d; ++c) out[c] = acc[c] * inv;
}

}  // namespace

void attend_sage_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  smoothed_blocks(kv, n, d, q, scale, out,
                  [&](const float* s, int rows, const uint8_t* v, int64_t vr, float* acc, float& max, float& sum) {
                    float vrow[512];
                    softmax_block(s, rows, d, max, sum, acc, vrow,
                                  [&](int j, float* row) { kv.v_to_float(v + j * vr, row, d); });
                  });
}

void attend_int8_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  smoothed_blocks(kv, n, d, q, scale, out,
                  [&](const float* s, int rows, const uint8_t* v, int64_t vr, float* acc, float& max, float& sum) {
                    float p[64], w[64];
                    int32_t isum[32];
                    rescale_to_block(s, rows, d, max, sum, acc);
                    for (int j = 0; j < rows; ++j) {
                      p[j] = exp_approx(s[j] - max);
                      sum += p[j];
                    }
                    for (int g = 0; g < d / 32; ++g) {
                      float wmax = 0.0f;
                      for (int j = 0; j < rows; ++j) {
                        w[j] = p[j] * fp16_to_f32(reinterpret_cast<const BlockQ8_0*>(v + j * vr)[g].d);
                        wmax = std::max(wmax, w[j]);
                      }
                      if (wmax == 0.0f) continue;
                      const float inv = kInt8PvLevels / wmax;
                      std::fill(isum, isum + 32, 0);
                      for (int j = 0; j < rows; ++j) {
                        const int32_t u = static_cast<int32_t>(std::nearbyint(w[j] * inv));
                        const int8_t* v8 = reinterpret_cast<const BlockQ8_0*>(v + j * vr)[g].qs;
                        for (int c = 0; c < 32; ++c) isum[c] += u * v8[c];
                      }
                      const float step = wmax / kInt8PvLevels;
                      for (int c = 0; c < 32; ++c)
                        acc[32 * g + c] = std::fma(step, static_cast<float>(isum[c]), acc[32 * g + c]);
                    }
                  });
}

}  // namespace ref
}  // namespace kestrel::kernels
