#include "model/quantize.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <vector>

#include "core/error.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "platform/thread_pool.h"

namespace kestrel {

const std::vector<QuantTarget>& quant_targets() {
  // file_type ids are llama.cpp's llama_ftype values.
  static const std::vector<QuantTarget> t = {
      {"F32", DType::F32, 0},
      {"F16", DType::F16, 1},
      {"BF16", DType::BF16, 32},
      {"Q4_0", DType::Q4_0, 2},
      {"Q4_1", DType::Q4_1, 3},
      {"Q8_0", DType::Q8_0, 7},
      {"Q5_0", DType::Q5_0, 8},
      {"Q5_1", DType::Q5_1, 9},
      {"Q4_K", DType::Q4_K, 15},
      {"Q5_K", DType::Q5_K, 17},
      {"Q6_K", DType::Q6_K, 18},
      {"IQ4_NL", DType::IQ4_NL, 25},
      {"IQ4_XS", DType::IQ4_XS, 30},
      {"Q4_K_S", DType::Q4_K, 14, QuantMix::Small},
      {"Q4_K_M", DType::Q4_K, 15, QuantMix::Medium},
      {"Q5_K_S", DType::Q5_K, 16, QuantMix::Small},
      {"Q5_K_M", DType::Q5_K, 17, QuantMix::Medium},
  };
  return t;
}

const QuantTarget& find_quant_target(const std::string& name) {
  std::string upper;
  for (char ch : name) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  for (const auto& t : quant_targets())
    if (t.name == upper) return t;
  std::string names;
  for (const auto& t : quant_targets()) names += (names.empty() ? "" : ", ") + t.name;
  fail("quantize: unknown type '", name, "' (supported: ", names, ")");
}

namespace {

bool is_block_k(DType t) {
  return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K || t == DType::IQ4_XS;
}

// K-quants need rows that are a multiple of 256; llama.cpp falls back to a
// 32-block format of similar size for the others.
DType fallback_for(DType t) {
  switch (t) {
    case DType::Q4_K: return DType::Q5_0;
    case DType::Q5_K: return DType::Q5_1;
    case DType::Q6_K: return DType::Q8_0;
    case DType::IQ4_XS: return DType::IQ4_NL;
    default: return t;
  }
}

// llama.cpp's choice of the layers that get more bits in a _M mix: the first
// and last eighth, and every third layer between.
bool use_more_bits(int layer, int n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

// "blk.12.attn_v.weight" -> 12 (-1 for a tensor outside the layers).
int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 4);
}

bool ends_with(const std::string& s, const char* tail) {
  const size_t n = std::strlen(tail);
  return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

// A mix's type for a layer tensor (llama-quantize's rules for Q4_K_S/M and Q5_K_S/M).
DType mixed_type(const std::string& name, DType base, const QuantizeOptions& o, int counted) {
  const int layer = counted >= 0 ? counted : layer_of(name);
  const bool v = ends_with(name, ".attn_v.weight"), down = ends_with(name, ".ffn_down.weight");
  const bool guard_down = o.activation_aware && !o.pure && (base == DType::Q4_0 || base == DType::Q5_0);
  if ((o.mix == QuantMix::None && !guard_down) || layer < 0 || (!v && !down)) return base;
  if (o.n_layer <= 0) fail("quantize: a K-quant mix or an activation-aware Q4_0/Q5_0 needs the model's layer count");
  if (guard_down) return down && layer < o.n_layer / 8 ? (base == DType::Q4_0 ? DType::Q4_1 : DType::Q5_1) : base;
  if (o.mix == QuantMix::Medium) return use_more_bits(layer, o.n_layer) ? DType::Q6_K : base;
  if (base != DType::Q4_K) return base;  // Q5_K_S: no exceptions
  if (v) return layer < 4 ? DType::Q5_K : base;
  return layer < o.n_layer / 8 ? DType::Q5_K : base;
}

}  // namespace

DType quantized_type(const std::string& name, const std::vector<int64_t>& ne, bool is_output, const QuantizeOptions& o,
                     int layer) {
  // Vectors (norms, biases) stay F32: they are tiny and precision-sensitive.
  if (ne.size() < 2 || name.find(".weight") == std::string::npos) return DType::F32;
  if (name == "rope_freqs.weight") return DType::F32;
  DType want = is_output ? o.type : mixed_type(name, o.type, o, layer);
  if (!o.pure && is_output && want != DType::F32 && want != DType::F16 && want != DType::BF16 && want != DType::Q8_0) {
    // The vocabulary projection gets more bits, as llama.cpp does.
    want = (ne[0] % 256 == 0) ? DType::Q6_K : DType::Q8_0;
  }
  const int64_t block = traits(want).block_size;
  if (ne[0] % block != 0) {
    want = is_block_k(want) ? fallback_for(want) : DType::F16;
    if (ne[0] % traits(want).block_size != 0) want = DType::F16;
  }
  return want;
}

void quantize_model(const std::string& in_path, const std::string& out_path, const QuantizeOptions& options) {
  const gguf::File in = gguf::File::open(in_path);
  QuantizeOptions o = options;
  if ((o.mix != QuantMix::None || o.activation_aware) && o.n_layer <= 0) {
    const std::string arch = in.get_string("general.architecture").value_or("");
    o.n_layer = static_cast<int>(in.get_u64(arch + ".block_count").value_or(0));
  }
  gguf::Writer out;
  out.copy_metadata(in);
  for (const auto& t : quant_targets())
    if (t.type == o.type && t.mix == o.mix) out.set_u32("general.file_type", t.file_type);
  out.set_u32("general.quantization_version", 2);
  if (o.metadata) o.metadata(out);

  std::map<std::string, const FloatTensor*> replaced;
  for (const FloatTensor* t : o.replacements) replaced[t->replaces.empty() ? t->name : t->replaces] = t;
  const bool has_output = in.find_tensor("output.weight") || replaced.count("output.weight");
  const auto is_output = [&](const std::string& name) {
    return name == "output.weight" || (name == "token_embd.weight" && !has_output);
  };
  // Float rows -> dst, rows spread over threads (K-quant searches are slow);
  // `importance`: the columns' weights, for a format that has a weighted quantizer.
  ThreadPool pool(o.n_threads);
  const auto quantize_rows = [&pool](DType dst, int64_t rows, int64_t cols,
                                     const std::function<void(int64_t, float*)>& row_of,
                                     const std::vector<float>* importance = nullptr) {
    const auto& dst_k = kernels::quant_kernels(dst);
    const kernels::QuantizeWeightedFn weighted = importance ? kernels::weighted_quantizer(dst) : nullptr;
    const size_t dst_row = row_bytes(dst, cols);
    std::vector<uint8_t> bytes(dst_row * static_cast<size_t>(rows));
    pool.parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t r = r0; r < r1; ++r) {
        row_of(r, row.data());
        if (weighted)
          weighted(row.data(), bytes.data() + r * dst_row, cols, importance->data());
        else
          dst_k.quantize_weights(row.data(), bytes.data() + r * dst_row, cols);
      }
    });
    return bytes;
  };

  const auto& tensors = in.tensors();
  // The importance matrix's entries for the tensors re-quantized into a
  // weighted format (checked for width before anything is quantized).
  std::map<std::string, const std::vector<float>*> weights_of;
  if (o.importance) {
    if (!kernels::weighted_quantizer(o.type))
      fail("quantize: an importance matrix weighs Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (and their mixes), not ",
           dtype_name(o.type));
    size_t found = 0;
    for (const auto& t : tensors) {
      const DType dst = quantized_type(t.name, t.ne, is_output(t.name), o);
      const std::vector<float>* w = o.importance->find(t.name, t.ne[0]);
      found += w != nullptr;
      if (w && dst != t.type && kernels::weighted_quantizer(dst) && !replaced.count(t.name)) weights_of[t.name] = w;
    }
    if (found == 0)
      fail("quantize: the importance matrix has no entry for any matrix of this model (another model's?)");
  }
  std::vector<const FloatTensor*> added;
  for (const FloatTensor* t : o.replacements)
    if (t->replaces.empty() && !in.find_tensor(t->name)) added.push_back(t);
  const size_t total = tensors.size() + added.size();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (!kernels::has_quant_kernels(t.type))
      fail("quantize: tensor '", t.name, "' has type ", dtype_name(t.type), ", which kestrel cannot read");
    const DType dst = quantized_type(t.name, t.ne, is_output(t.name), o);
    const int64_t cols = t.ne[0];
    const int64_t rows = t.n_elements() / cols;
    std::vector<uint8_t> bytes;
    if (const auto it = replaced.find(t.name); it != replaced.end()) {
      const FloatTensor& f = *it->second;
      if (f.ne != t.ne)
        fail("quantize: replacement '", t.name, "' has shape ", gguf::shape_text(f.ne), ", the file's is ",
             gguf::shape_text(t.ne));
      const auto enc = o.encoded.find(f.name);
      if (enc != o.encoded.end()) {
        if (enc->second.type != dst)
          fail("quantize: '", f.name, "' was encoded as ", dtype_name(enc->second.type), ", the file takes ",
               dtype_name(dst));
        if (enc->second.bytes.size() != row_bytes(dst, cols) * static_cast<size_t>(rows))
          fail("quantize: encoded '", f.name, "' holds ", enc->second.bytes.size(), " bytes, not ",
               row_bytes(dst, cols) * static_cast<size_t>(rows));
        bytes = enc->second.bytes;
      } else {
        bytes =
            quantize_rows(dst, rows, cols, [&](int64_t r, float* row) { std::copy(f.row(r), f.row(r) + cols, row); });
      }
    } else if (dst == t.type) {
      bytes.assign(t.data, t.data + t.nbytes);
    } else {
      const auto& src_k = kernels::quant_kernels(t.type);
      const size_t src_row = row_bytes(t.type, cols);
      const auto w = weights_of.find(t.name);
      bytes = quantize_rows(
          dst, rows, cols, [&](int64_t r, float* row) { src_k.dequantize_row(t.data + r * src_row, row, cols); },
          w != weights_of.end() ? w->second : nullptr);
    }
    const auto renamed = replaced.find(t.name);
    const std::string& name = renamed != replaced.end() ? renamed->second->name : t.name;
    out.add_tensor(name, dst, t.ne, std::move(bytes));
    if (o.progress) o.progress(i, total, name, dst);
  }
  for (size_t i = 0; i < added.size(); ++i) {
    const FloatTensor& f = *added[i];
    const DType dst = quantized_type(f.name, f.ne, is_output(f.name), o);
    const int64_t cols = f.cols();
    out.add_tensor(f.name, dst, f.ne, quantize_rows(dst, f.rows(), cols, [&](int64_t r, float* row) {
                     std::copy(f.row(r), f.row(r) + cols, row);
                   }));
    if (o.progress) o.progress(tensors.size() + i, total, f.name, dst);
  }
  out.write(out_path);
}

}  // namespace kestrel
