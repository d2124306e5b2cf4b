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
  const auto& tensors = in.tensors();
  if (o.importance && !kernels::weighted_quantizer(o.type))
    fail("quantize: an importance matrix weighs Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (and their mixes), not ",
         dtype_name(o.type));

  // What each output tensor is made from, decided (and checked) before any
  // byte is written; the writer then streams them in slices of rows, so the
  // output is never held in memory whole.
  struct Planned {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    const uint8_t* bytes = nullptr;            // written as they are (a copy, or GPTQ's encoding)
    const gguf::TensorInfo* source = nullptr;  // rows decoded from the file's tensor
    const FloatTensor* floats = nullptr;       // rows from a transform's floats
    const std::vector<float>* importance = nullptr;
  };
  std::vector<Planned> plan;
  size_t covered = 0;  // tensors the importance matrix has an entry for (checked for width here)
  for (const auto& t : tensors) {
    if (!kernels::has_quant_kernels(t.type))
      fail("quantize: tensor '", t.name, "' has type ", dtype_name(t.type), ", which kestrel cannot read");
    Planned p{t.name, quantized_type(t.name, t.ne, is_output(t.name), o), t.ne};
    const std::vector<float>* importance = o.importance ? o.importance->find(t.name, t.ne[0]) : nullptr;
    covered += importance != nullptr;
    const int64_t rows = t.n_elements() / t.ne[0];
    if (const auto it = replaced.find(t.name); it != replaced.end()) {
      const FloatTensor& f = *it->second;
      if (f.ne != t.ne)
        fail("quantize: replacement '", t.name, "' has shape ", gguf::shape_text(f.ne), ", the file's is ",
             gguf::shape_text(t.ne));
      p.name = f.name;
      p.floats = &f;
      if (const auto enc = o.encoded.find(f.name); enc != o.encoded.end()) {
        if (enc->second.type != p.type)
          fail("quantize: '", f.name, "' was encoded as ", dtype_name(enc->second.type), ", the file takes ",
               dtype_name(p.type));
        if (enc->second.bytes.size() != row_bytes(p.type, t.ne[0]) * static_cast<size_t>(rows))
          fail("quantize: encoded '", f.name, "' holds ", enc->second.bytes.size(), " bytes, not ",
               row_bytes(p.type, t.ne[0]) * static_cast<size_t>(rows));
        p.bytes = enc->second.bytes.data();
      }
    } else if (p.type == t.type) {
      p.bytes = t.data;
    } else {
      p.source = &t;
      if (kernels::weighted_quantizer(p.type)) p.importance = importance;
    }
    plan.push_back(std::move(p));
  }
  if (o.importance && covered == 0)
    fail("quantize: the importance matrix has no entry for any matrix of this model (another model's?)");
  for (const FloatTensor* t : o.replacements)
    if (t->replaces.empty() && !in.find_tensor(t->name)) {
      Planned p{t->name, quantized_type(t->name, t->ne, is_output(t->name), o), t->ne};
      p.floats = t;
      plan.push_back(std::move(p));
    }

  for (const Planned& p : plan) out.add_tensor_info(p.name, p.type, p.ne);
  // Float rows -> the output type, rows spread over threads (K-quant searches
  // are slow), through the weighted quantizer where an importance is given.
  ThreadPool pool(o.n_threads);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));
  out.write(out_path, [&](const gguf::TensorChunk& c) {
    const Planned& p = plan[c.index];
    const int64_t cols = p.ne[0];
    const size_t rb = row_bytes(p.type, cols);
    if (p.bytes) {
      std::copy_n(p.bytes + static_cast<size_t>(c.row0) * rb, c.bytes.size(), c.bytes.data());
    } else {
      const auto& dst_k = kernels::quant_kernels(p.type);
      const kernels::QuantizeWeightedFn weighted = p.importance ? kernels::weighted_quantizer(p.type) : nullptr;
      const kernels::QuantKernels* src_k = p.source ? &kernels::quant_kernels(p.source->type) : nullptr;
      const size_t src_row = p.source ? row_bytes(p.source->type, cols) : 0;
      pool.parallel_for(c.n_rows, [&](int64_t r0, int64_t r1, int ith) {
        std::vector<float>& row = scratch[static_cast<size_t>(ith)];
        row.resize(static_cast<size_t>(cols));
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t at = c.row0 + r;
          if (src_k)
            src_k->dequantize_row(p.source->data + static_cast<size_t>(at) * src_row, row.data(), cols);
          else
            std::copy(p.floats->row(at), p.floats->row(at) + cols, row.data());
          uint8_t* dst = c.bytes.data() + static_cast<size_t>(r) * rb;
          if (weighted)
            weighted(row.data(), dst, cols, p.importance->data());
          else
            dst_k.quantize_weights(row.data(), dst, cols);
        }
      });
    }
    if (o.progress && c.row0 + c.n_rows == c.info->n_elements() / cols)
      o.progress(c.index, plan.size(), p.name, p.type);
  });
}

}  // namespace kestrel
