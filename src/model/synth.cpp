#include "model/synth.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numbers>

#include "core/error.h"
#include "core/hash.h"
#include "gguf/gguf.h"
#include "kernels/quant_kernels.h"
#include "model/quantize.h"
#include "platform/thread_pool.h"
#include "tokenizer/vocab.h"

namespace kestrel {

const std::vector<SynthShape>& synth_shapes() {
  // Llama 3 shapes; rope base 500000 as Llama 3, but no llama3 rope scaling
  // (kestrel does not read it and it does not change the cost), so the
  // training context is the 8192 of Llama 3 before the long-context extension.
  static const std::vector<SynthShape> s = {
      {"tiny", "a 2-layer test model", 256, 2, 768, 4, 2, 2048, 500000.0f},
      {"1b", "Llama-3.2-1B", 2048, 16, 8192, 32, 8, 8192, 500000.0f},
      {"3b", "Llama-3.2-3B", 3072, 28, 8192, 24, 8, 8192, 500000.0f},
      {"8b", "Llama-3.1-8B", 4096, 32, 14336, 32, 8, 8192, 500000.0f},
  };
  return s;
}

const SynthShape& find_synth_shape(const std::string& name) {
  std::string lower;
  for (char ch : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& s : synth_shapes())
    if (s.name == lower) return s;
  std::string names;
  for (const auto& s : synth_shapes()) names += (names.empty() ? "" : ", ") + s.name;
  fail("synth: unknown size '", name, "' (supported: ", names, ")");
}

DType synth_output_type(DType type, int64_t n_embd) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0: return type;
    default: return n_embd % 256 == 0 ? DType::Q6_K : DType::Q8_0;
  }
}

std::vector<SynthTensor> synth_tensor_plan(const SynthShape& s, int64_t n_vocab, DType type) {
  const int64_t E = s.n_embd, F = s.n_ff;
  const int64_t hd = E / s.n_head;
  const int64_t q_dim = s.n_head * hd, kv_dim = s.n_kv_head * hd;
  const auto inv_sqrt = [](int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); };
  const auto matrix = [&](std::string name, int64_t cols, int64_t rows, DType t) {
    if (cols % traits(t).block_size != 0)
      fail("synth: tensor '", name, "' has rows of ", cols, " elements, not a multiple of ", dtype_name(t),
           "'s block of ", traits(t).block_size);
    return SynthTensor{std::move(name), t, {cols, rows}, inv_sqrt(cols)};
  };
  const auto vector = [](std::string name, int64_t n) { return SynthTensor{std::move(name), DType::F32, {n}, 0.0f}; };

  std::vector<SynthTensor> out;
  SynthTensor embd = matrix("token_embd.weight", E, n_vocab, type);
  embd.stddev = 1.0f;
  out.push_back(std::move(embd));
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    out.push_back(vector(p + "attn_norm.weight", E));
    out.push_back(matrix(p + "attn_q.weight", E, q_dim, type));
    out.push_back(matrix(p + "attn_k.weight", E, kv_dim, type));
    out.push_back(matrix(p + "attn_v.weight", E, kv_dim, type));
    out.push_back(matrix(p + "attn_output.weight", q_dim, E, type));
    out.push_back(vector(p + "ffn_norm.weight", E));
    out.push_back(matrix(p + "ffn_gate.weight", E, F, type));
    out.push_back(matrix(p + "ffn_up.weight", E, F, type));
    out.push_back(matrix(p + "ffn_down.weight", F, E, type));
  }
  out.push_back(vector("output_norm.weight", E));
  out.push_back(matrix("output.weight", E, n_vocab, synth_output_type(type, E)));
  return out;
}

namespace {

// A splitmix64 stream per row; Box-Muller turns two 24-bit uniforms into two
// normals. Plain float libm calls, no fast-math: the same bytes on every run.
class RowRng {
 public:
  RowRng(uint64_t seed, uint64_t name_hash, int64_t row)
      : state_(mix64(seed ^ mix64(name_hash ^ mix64(static_cast<uint64_t>(row) + 1)))) {}

  void fill_normal(float* out, int64_t n, float stddev) {
    constexpr float kInv24 = 1.0f / 16777216.0f;
    constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;
    for (int64_t i = 0; i < n; i += 2) {
      const uint64_t bits = next();
      const float u1 = (static_cast<float>(bits >> 40) + 1.0f) * kInv24;  // (0, 1]: log is finite
      const float u2 = static_cast<float>((bits >> 8) & 0xffffff) * kInv24;
      const float r = stddev * std::sqrt(-2.0f * std::log(u1));
      out[i] = r * std::cos(kTwoPi * u2);
      if (i + 1 < n) out[i + 1] = r * std::sin(kTwoPi * u2);
    }
  }

 private:
  uint64_t next() { return splitmix64(state_); }
  uint64_t state_;
};

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the others
// for code points 256, 257, ... in byte order. Returns byte b's token text.
std::string byte_token(int b) {
  const auto printable = [](int c) { return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174); };
  int cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int c = 0; c < b; ++c) cp += printable(c) ? 0 : 1;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {  // < 0x800 for every code point here
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

struct VocabKeys {
  std::vector<std::pair<std::string, gguf::Value>> keys;  // tokenizer.* in order
  int64_t n_vocab = 0;
  std::string label;  // for general.name
};

// 256 byte tokens, 16 merges of frequent English pairs, <|endoftext|> (BOS and
// EOS). Enough for the BPE tokenizer of both engines to run on any text.
VocabKeys builtin_vocab() {
  static const char* kMerges[] = {"Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "Ġt he", "r e",
                                  "a t", "Ġ s", "e n", "o r", "Ġ w", "Ġ o", "i s", "e s"};
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_token(b));
  for (const char* m : kMerges) {
    std::string s = m;
    merges.push_back(s);
    s.erase(s.find(' '), 1);
    tokens.push_back(s);
  }
  types.assign(tokens.size(), static_cast<int32_t>(TokenType::Normal));
  const int32_t eot = static_cast<int32_t>(tokens.size());
  tokens.push_back("<|endoftext|>");
  types.push_back(static_cast<int32_t>(TokenType::Control));

  gguf::Writer w;  // only to build Values with the writer's checks
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", merges);
  w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(eot));
  w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eot));
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  VocabKeys v;
  v.keys = w.metadata();
  v.n_vocab = static_cast<int64_t>(tokens.size());
  v.label = "builtin byte vocab " + std::to_string(v.n_vocab);
  return v;
}

VocabKeys vocab_from_file(const std::string& path) {
  if (!std::filesystem::exists(path)) fail("synth: vocab file '", path, "' does not exist");
  const gguf::File f = gguf::File::open(path);
  VocabKeys v;
  for (const auto& [key, value] : f.metadata())
    if (key.rfind("tokenizer.", 0) == 0) v.keys.emplace_back(key, value);
  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) fail("synth: '", path, "' has no tokenizer (tokenizer.ggml.tokens)");
  v.n_vocab = static_cast<int64_t>(tokens->size());
  const std::string who = f.get_string("general.basename").value_or(f.get_string("general.name").value_or(
      std::filesystem::path(path).stem().string()));
  v.label = who + " vocab " + std::to_string(v.n_vocab);
  return v;
}

uint32_t file_type_id(DType type) {
  for (const auto& t : quant_targets())
    if (t.type == type) return t.file_type;
  std::string names;
  for (const auto& t : quant_targets()) names += (names.empty() ? "" : ", ") + t.name;
  fail("synth: type ", dtype_name(type), " cannot be written (supported: ", names, ")");
}

}  // namespace

SynthResult synth_model(const std::string& out_path, const SynthOptions& o) {
  const SynthShape& shape = find_synth_shape(o.size);
  const uint32_t file_type = file_type_id(o.type);
  const VocabKeys vocab = o.vocab_from.empty() || o.vocab_from == kBuiltinVocab ? builtin_vocab()
                                                                                 : vocab_from_file(o.vocab_from);
  const std::vector<SynthTensor> plan = synth_tensor_plan(shape, vocab.n_vocab, o.type);
  for (const auto& t : plan)
    if (!kernels::has_quant_kernels(t.type)) fail("synth: no quantizer for ", dtype_name(t.type));

  SynthResult result;
  result.n_vocab = vocab.n_vocab;
  result.name = "kestrel-synth-" + shape.name + " (" + shape.like + " shape, " + vocab.label + ", seed " +
                std::to_string(o.seed) + ", random weights)";

  gguf::Writer w;
  const std::string a = "llama.";
  w.set_string("general.architecture", "llama");
  w.set_string("general.type", "model");
  w.set_string("general.name", result.name);
  w.set_u32("general.file_type", file_type);
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + "vocab_size", static_cast<uint32_t>(vocab.n_vocab));
  w.set_u32(a + "context_length", static_cast<uint32_t>(shape.n_ctx_train));
  w.set_u32(a + "embedding_length", static_cast<uint32_t>(shape.n_embd));
  w.set_u32(a + "block_count", static_cast<uint32_t>(shape.n_layer));
  w.set_u32(a + "feed_forward_length", static_cast<uint32_t>(shape.n_ff));
  w.set_u32(a + "attention.head_count", static_cast<uint32_t>(shape.n_head));
  w.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(shape.n_kv_head));
  w.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(shape.n_embd / shape.n_head));
  w.set_f32(a + "rope.freq_base", shape.rope_freq_base);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_string("kestrel.synth.size", shape.name);
  w.set_u64("kestrel.synth.seed", o.seed);
  for (const auto& [key, value] : vocab.keys) w.set(key, value);

  std::vector<uint64_t> name_hash;
  for (const auto& t : plan) {
    w.add_tensor_info(t.name, t.type, t.ne);
    name_hash.push_back(fnv1a(t.name));
  }
  uint64_t total = 0;
  for (const auto& info : w.tensor_infos()) {
    total += info.nbytes;
    result.n_params += info.n_elements();
  }

  ThreadPool pool(o.n_threads);
  int64_t max_cols = 0;
  for (const auto& t : plan) max_cols = std::max(max_cols, t.ne[0]);
  std::vector<std::vector<float>> rows(pool.size(), std::vector<float>(static_cast<size_t>(max_cols)));
  uint64_t done = 0;
  w.write(out_path, [&](const gguf::TensorChunk& c) {
    const SynthTensor& t = plan[c.index];
    const int64_t cols = t.ne[0];
    const size_t rb = row_bytes(t.type, cols);
    const auto quantize = kernels::quant_kernels(t.type).quantize_weights;
    pool.parallel_for(c.n_rows, [&](int64_t r0, int64_t r1, int ith) {
      float* row = rows[ith].data();
      for (int64_t r = r0; r < r1; ++r) {
        if (t.stddev == 0.0f) {
          std::fill(row, row + cols, 1.0f);
        } else {
          RowRng(o.seed, name_hash[c.index], c.row0 + r).fill_normal(row, cols, t.stddev);
        }
        quantize(row, c.bytes.data() + static_cast<size_t>(r) * rb, cols);
      }
    });
    done += c.bytes.size();
    if (o.progress) o.progress(done, total);
  });
  result.file_bytes = std::filesystem::file_size(out_path);
  return result;
}

}  // namespace kestrel
