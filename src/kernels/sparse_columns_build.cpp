// build_columns (kernels/sparse_columns.h): a GGUF weight turned input-major.
// Per row, every group of inputs is split into W = s v - m:
//  - exact formats: the codes v come from the format's own scalar dequantizer
//    run on a copy of the row whose block scales are set to 1 and offsets to 0
//    (so the bit layouts are known in one place only), and s, m from the block
//    headers, as the dequantizer computes them (exact products in float);
//  - other formats: the dequantized row re-quantized to int8 per 32 inputs.
// s and m are then rounded to F16. Runs once per weight: plain scalar code.
#include <cassert>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/quant_kernels.h"
#include "kernels/sparse_columns.h"

namespace kestrel::kernels {
namespace {

constexpr uint16_t kHalfOne = 0x3C00;

// Sets every block of `row` (a copy) to scale 1, offset 0: the dequantizer
// then returns the codes themselves, shifted by code_bias(type).
void unit_scales(DType type, uint8_t* row, int64_t cols) {
  const size_t bb = traits(type).block_bytes;
  const int64_t blocks = cols / traits(type).block_size;
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* p = row + static_cast<size_t>(b) * bb;
    switch (type) {
      case DType::Q4_0:
        reinterpret_cast<BlockQ4_0*>(p)->d = kHalfOne;
        break;
      case DType::Q4_1:
        reinterpret_cast<BlockQ4_1*>(p)->d = kHalfOne;
        reinterpret_cast<BlockQ4_1*>(p)->m = 0;
        break;
      case DType::Q5_0:
        reinterpret_cast<BlockQ5_0*>(p)->d = kHalfOne;
        break;
      case DType::Q5_1:
        reinterpret_cast<BlockQ5_1*>(p)->d = kHalfOne;
        reinterpret_cast<BlockQ5_1*>(p)->m = 0;
        break;
      case DType::Q8_0:
        reinterpret_cast<BlockQ8_0*>(p)->d = kHalfOne;
        break;
      case DType::Q4_K:
      case DType::Q5_K: {
        // Both start with d, dmin, scales[12]. k_scale_min reads sc = 1, m = 0
        // for all 8 sub-blocks from these bytes (top bits all clear).
        static constexpr uint8_t kUnit[kKScaleBytes] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1};
        auto* k = reinterpret_cast<BlockQ4K*>(p);
        k->d = kHalfOne;
        k->dmin = 0;
        std::memcpy(k->scales, kUnit, sizeof(kUnit));
        break;
      }
      case DType::Q6_K: {
        auto* k = reinterpret_cast<BlockQ6K*>(p);
        k->d = kHalfOne;
        for (int8_t& s : k->scales) s = 1;
        break;
      }
      default:
        assert(false && "not an exact format");
    }
  }
}

// What the unit-scale dequantizer returns is v - code_bias.
int code_bias(DType type) {
  switch (type) {
    case DType::Q4_0:
      return 8;
    case DType::Q5_0:
      return 16;
    case DType::Q6_K:
      return 32;
    default:
      return 0;
  }
}

// s, m of group g of a row of an exact format, as its dequantizer forms them.
void group_scale(DType type, const uint8_t* row, int64_t g, float* s, float* m) {
  switch (type) {
    case DType::Q4_0: {
      const float d = fp16_to_f32(reinterpret_cast<const BlockQ4_0*>(row)[g].d);
      *s = d, *m = 8.0f * d;
      return;
    }
    case DType::Q4_1: {
      const BlockQ4_1& b = reinterpret_cast<const BlockQ4_1*>(row)[g];
      *s = fp16_to_f32(b.d), *m = -fp16_to_f32(b.m);
      return;
    }
    case DType::Q5_0: {
      const float d = fp16_to_f32(reinterpret_cast<const BlockQ5_0*>(row)[g].d);
      *s = d, *m = 16.0f * d;
      return;
    }
    case DType::Q5_1: {
      const BlockQ5_1& b = reinterpret_cast<const BlockQ5_1*>(row)[g];
      *s = fp16_to_f32(b.d), *m = -fp16_to_f32(b.m);
      return;
    }
    case DType::Q8_0:
      *s = fp16_to_f32(reinterpret_cast<const BlockQ8_0*>(row)[g].d), *m = 0.0f;
      return;
    case DType::Q4_K:
    case DType::Q5_K: {
      // Same header in both; blocks of 256 = 8 groups of 32.
      const size_t bb = traits(type).block_bytes;
      const auto* b = reinterpret_cast<const BlockQ4K*>(row + static_cast<size_t>(g / 8) * bb);
      uint8_t sc, mn;
      k_scale_min(static_cast<int>(g % 8), b->scales, &sc, &mn);
      *s = fp16_to_f32(b->d) * sc, *m = fp16_to_f32(b->dmin) * mn;
      return;
    }
    case DType::Q6_K: {
      const BlockQ6K& b = reinterpret_cast<const BlockQ6K*>(row)[g / 16];
      *s = fp16_to_f32(b.d) * static_cast<float>(b.scales[g % 16]);
      *m = 32.0f * *s;
      return;
    }
    default:
      assert(false && "not an exact format");
  }
}

bool exact_format(DType type) {
  switch (type) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

// The smallest F16 >= x (x >= 0): an int8 code round(w / s) then never leaves
// -127..127, whatever F16's rounding (subnormal scales included).
uint16_t half_at_least(float x) {
  uint16_t h = f32_to_fp16(x);
  if (fp16_to_f32(h) < x) ++h;
  return h;
}

bool half_finite(uint16_t h) { return (h & 0x7C00) != 0x7C00; }

class RowSplitter {
 public:
  RowSplitter(DType type, const ColumnLayout& layout)
      : type_(type), layout_(layout), dequantize_(quant_kernels(type, Isa::Scalar).dequantize_row) {
    const size_t n = static_cast<size_t>(layout.cols);
    w_.resize(n);
    copy_.resize(row_bytes(type, layout.cols));
  }

  // Row r into s16, m16 [groups] (F16 bits) and v [cols].
  void split(const uint8_t* row, int64_t r, uint16_t* s16, uint16_t* m16, int* v) {
    if (exact_format(type_))
      split_exact(row, r, s16, m16, v);
    else
      split_requantized(row, r, s16, m16, v);
  }

 private:
  void split_exact(const uint8_t* row, int64_t r, uint16_t* s16, uint16_t* m16, int* v) {
    const int64_t cols = layout_.cols;
    std::memcpy(copy_.data(), row, copy_.size());
    unit_scales(type_, copy_.data(), cols);
    dequantize_(copy_.data(), w_.data(), cols);
    const int bias = code_bias(type_);
    for (int64_t j = 0; j < cols; ++j) {
      v[j] = static_cast<int>(w_[static_cast<size_t>(j)]) + bias;
      assert(static_cast<float>(v[j] - bias) == w_[static_cast<size_t>(j)]);
      assert(layout_.codes == ColumnCodes::Nibble ? (v[j] >= 0 && v[j] <= 15) : (v[j] >= -128 && v[j] <= 127));
    }
    for (int64_t g = 0; g < layout_.groups(); ++g) {
      float s, m;
      group_scale(type_, row, g, &s, &m);
      s16[g] = f32_to_fp16(s);
      m16[g] = f32_to_fp16(m);
      if (!half_finite(s16[g]) || !half_finite(m16[g]))
        fail("sparse columns: row ", r, " of a ", dtype_name(type_), " weight has a group scale (", s, ", offset ", m,
             ") outside F16's range");
    }
  }

  void split_requantized(const uint8_t* row, int64_t r, uint16_t* s16, uint16_t* m16, int* v) {
    dequantize_(row, w_.data(), layout_.cols);
    const int group = layout_.group;
    for (int64_t g = 0; g < layout_.groups(); ++g) {
      const float* w = w_.data() + g * group;
      float amax = 0.0f;
      bool finite = true;
      for (int i = 0; i < group; ++i) {
        amax = std::fmax(amax, std::fabs(w[i]));
        finite = finite && std::isfinite(w[i]);
      }
      s16[g] = half_at_least(amax / 127.0f);
      m16[g] = 0;
      if (!finite || !half_finite(s16[g]))
        fail("sparse columns: row ", r, " of a ", dtype_name(type_), " weight has a value of magnitude ", amax,
             " (not finite, or an int8 scale beyond F16's range)");
      const float s = fp16_to_f32(s16[g]);
      for (int i = 0; i < group; ++i) {
        const long q = s == 0.0f ? 0 : std::lrint(w[i] / s);
        v[g * group + i] = static_cast<int>(q < -127 ? -127 : q > 127 ? 127 : q);
      }
    }
  }

  DType type_;
  const ColumnLayout& layout_;
  DequantizeRowFn dequantize_;
  std::vector<float> w_;
  std::vector<uint8_t> copy_;
};

}  // namespace

void build_columns(DType type, const uint8_t* data, size_t row_stride, const ColumnLayout& layout, int64_t chunk_begin,
                   int64_t chunk_end, uint8_t* out) {
  const int64_t groups = layout.groups(), cols = layout.cols;
  const size_t cb = layout.column_bytes(), gb = layout.group_bytes(), sb = layout.scale_bytes();
  const bool nibble = layout.codes == ColumnCodes::Nibble;
  RowSplitter splitter(type, layout);
  std::vector<uint16_t> s16(static_cast<size_t>(groups)), m16(static_cast<size_t>(groups));
  std::vector<int> v(static_cast<size_t>(cols));
  for (int64_t c = chunk_begin; c < chunk_end; ++c) {
    uint8_t* chunk = out + static_cast<size_t>(c) * layout.chunk_bytes();
    std::memset(chunk, 0, layout.chunk_bytes());  // padding rows: s = m = 0, codes 0
    for (int64_t k = 0; k < kColumnChunkRows; ++k) {
      const int64_t r = c * kColumnChunkRows + k;
      if (r >= layout.rows) break;
      splitter.split(data + static_cast<size_t>(r) * row_stride, r, s16.data(), m16.data(), v.data());
      for (int64_t g = 0; g < groups; ++g) {
        uint8_t* grp = chunk + static_cast<size_t>(g) * gb;
        std::memcpy(grp + 2 * k, &s16[static_cast<size_t>(g)], 2);
        std::memcpy(grp + 2 * (kColumnChunkRows + k), &m16[static_cast<size_t>(g)], 2);
        for (int i = 0; i < layout.group; ++i) {
          uint8_t* col = grp + sb + static_cast<size_t>(i) * cb;
          const int q = v[static_cast<size_t>(g * layout.group + i)];
          if (!nibble)
            col[k] = static_cast<uint8_t>(static_cast<int8_t>(q));
          else if (k < 64)
            col[k] |= static_cast<uint8_t>(q);
          else
            col[k - 64] |= static_cast<uint8_t>(q << 4);
        }
      }
    }
  }
}

}  // namespace kestrel::kernels
