// `kestrel quantize --rotate --awq` on tiny models, against the model itself:
//  - rotation and AWQ's scale folds leave the function unchanged (written in
//    F32, the logits match the original's within float rounding), with norms
//    that are not 1, tied and untied heads, grouped-query attention;
//  - the recorded inputs mapped by DecoderRotation are the inputs the rotated
//    model computes;
//  - AWQ's search lowers the error of 4-bit rounding on text it did not see,
//    on a model with outlier activation channels;
//  - bad input: too little calibration text, other architectures.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "kernels/quant_kernels.h"
#include "model/importance_matrix.h"
#include "model/quantize.h"
#include "model/weight_rotation.h"
#include "platform/thread_pool.h"
#include "runtime/aware_quantize.h"
#include "runtime/awq.h"
#include "runtime/cq_calibration.h"
#include "runtime/session.h"
#include "unit/runtime/tiny_model.h"

namespace kestrel {
namespace {

using testing::all_logits;
using testing::LoadedTinyModel;
using testing::relative_gap;
using testing::TinyModelSpec;

// The model's file written as F32 with `d`'s tensors in place of its own.
std::unique_ptr<Model> write_f32(const Model& model, const FloatDecoder& d, const std::string& tag,
                                 int down_block = 0) {
  QuantizeOptions q;
  q.type = DType::F32;
  q.n_threads = 2;
  q.replacements = decoder_tensors(d);
  if (down_block) q.metadata = [down_block](gguf::Writer& w) { w.set_u32(kDownHadamardKey, down_block); };
  const std::string path = model.path() + "." + tag + ".gguf";
  quantize_model(model.path(), path, q);
  std::unique_ptr<Model> out;
  try {
    out = load_model(path);
  } catch (...) {
    std::filesystem::remove(path);
    throw;
  }
  std::filesystem::remove(path);  // the mapping keeps the data
  return out;
}

TinyModelSpec spec_with_norms(bool tied) {
  TinyModelSpec s;
  s.norm_spread = 0.3f;
  s.outlier_channels = 3;
  s.outlier_scale = 8.0f;
  s.tied_output = tied;
  return s;
}

TEST(WeightRotation, FoldedRotationComputesTheSameFunction) {
  for (bool tied : {false, true}) {
    LoadedTinyModel m(tied ? "rot_tied" : "rot_untied", spec_with_norms(tied));
    ThreadPool pool(2);
    FloatDecoder d = load_float_decoder(m.model->file(), m.model->config(), true, pool);
    const FloatDecoder before = d;
    rotate_decoder(d, 99, pool);
    EXPECT_FALSE(d.output.empty()) << "a tied head is untied";
    EXPECT_GT(relative_gap(before.layers[0].q.data, d.layers[0].q.data), 0.1) << "the weights did not move";
    for (float g : d.layers[1].ffn_norm.data) EXPECT_EQ(g, 1.0f);
    auto rotated = write_f32(*m.model, d, "rot");
    EXPECT_NE(rotated->file().find_tensor("output.weight"), nullptr);
    const std::string text = testing::tiny_text();
    EXPECT_LT(relative_gap(all_logits(*m.model, text), all_logits(*rotated, text)), 2e-4) << "tied " << tied;
  }
}

// Records every projection input of a model on a text.
AwqInputs record_inputs(const Model& model, const std::string& text, int64_t samples) {
  AwqInputs inputs(model.config(), samples, 1);
  SessionOptions so;
  so.n_ctx = 512;
  so.engine.n_threads = 2;
  so.engine.k_type = so.engine.v_type = DType::F32;  // an F16 cache would round more than the transforms do
  Session s(model, so);
  s.set_projection_observer(&inputs);
  s.append(model.tokenizer().encode(text, true, false));
  return inputs;
}

TEST(WeightRotation, OnlineHadamardBeforeDownComputesTheSameFunction) {
  LoadedTinyModel m("rot_down", spec_with_norms(false));
  ThreadPool pool(2);
  FloatDecoder d = load_float_decoder(m.model->file(), m.model->config(), true, pool);
  rotate_decoder(d, 7, pool);
  const int block = rotate_down_input(d, pool);
  EXPECT_EQ(block, 256);  // n_ff 256
  auto rotated = write_f32(*m.model, d, "rot_down", block);
  EXPECT_EQ(rotated->file().find_tensor("blk.0.ffn_down.weight"), nullptr) << "llama.cpp must refuse the file";
  EXPECT_NE(rotated->file().find_tensor("blk.0.ffn_down_hadamard.weight"), nullptr);
  const std::string text = testing::tiny_text();
  EXPECT_LT(relative_gap(all_logits(*m.model, text), all_logits(*rotated, text)), 2e-4);
  try {  // a block the model's n_ff does not give: refused at load
    write_f32(*m.model, d, "rot_down_bad", 128);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hadamard_block"), std::string::npos) << e.what();
  }
  EXPECT_EQ(down_hadamard_block(4864), 256);
  EXPECT_EQ(down_hadamard_block(1536), 512);
  EXPECT_EQ(down_hadamard_block(35), 0);
}

TEST(WeightRotation, MappedInputsAreTheRotatedModelsInputs) {
  LoadedTinyModel m("rot_inputs", spec_with_norms(false));
  ThreadPool pool(2);
  FloatDecoder d = load_float_decoder(m.model->file(), m.model->config(), true, pool);
  const DecoderRotation rotation = rotate_decoder(d, 5, pool);
  const int block = rotate_down_input(d, pool);
  auto rotated = write_f32(*m.model, d, "rot_inputs", block);
  const std::string text = "The river runs north past the mill.";
  AwqInputs mapped = record_inputs(*m.model, text, 24);
  const AwqInputs direct = record_inputs(*rotated, text, 24);
  ASSERT_EQ(mapped.samples(), direct.samples());
  mapped.rotate(rotation);
  mapped.rotate_down(block);
  for (int l = 0; l < m.model->config().n_layer; ++l)
    for (AwqInput in : {AwqInput::Attention, AwqInput::Output, AwqInput::Mlp, AwqInput::Down})
      EXPECT_LT(relative_gap(direct.rows(l, in), mapped.rows(l, in)), 1e-4)
          << "layer " << l << " input " << awq_input_name(in);
}

TEST(Awq, FoldedScalesComputeTheSameFunction) {
  LoadedTinyModel m("awq_fold", spec_with_norms(false));  // 2 heads on 1 kv head: grouped
  const ModelConfig& c = m.model->config();
  ThreadPool pool(2);
  FloatDecoder d = load_float_decoder(m.model->file(), c, false, pool);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.25f, 4.0f);
  for (FloatLayer& L : d.layers) {
    for (AwqInput in : {AwqInput::Attention, AwqInput::Mlp, AwqInput::Down}) {
      std::vector<float> s(static_cast<size_t>(in == AwqInput::Down ? c.n_ff : c.n_embd));
      for (float& x : s) x = u(rng);
      fold_awq_scales(L, c, in, s);
    }
    // Output: one scale per (kv head, channel), shared by the heads reading it.
    std::vector<float> per_kv(static_cast<size_t>(c.n_kv_head * c.head_dim)), s;
    for (float& x : per_kv) x = u(rng);
    for (int h = 0; h < c.n_head; ++h)
      for (int j = 0; j < c.head_dim; ++j)
        s.push_back(per_kv[static_cast<size_t>(h / (c.n_head / c.n_kv_head) * c.head_dim + j)]);
    fold_awq_scales(L, c, AwqInput::Output, s);
  }
  auto scaled = write_f32(*m.model, d, "awq_fold");
  const std::string text = testing::tiny_text();
  EXPECT_LT(relative_gap(all_logits(*m.model, text), all_logits(*scaled, text)), 2e-4);
}

// Mean squared logit error of a quantized copy against the F32 model, on text
// the calibration did not see.
double logit_error(const Model& reference, const std::string& path) {
  auto q = load_model(path);
  const std::string text = testing::tiny_text();
  const std::vector<float> a = all_logits(reference, text), b = all_logits(*q, text);
  double e = 0.0;
  for (size_t i = 0; i < a.size(); ++i) e += double{a[i] - b[i]} * (a[i] - b[i]);
  std::filesystem::remove(path);
  return e / static_cast<double>(a.size());
}

std::string calibration_text() {
  return "Calibration text, not the text the tests score: a walk along the river in spring, with the birds "
         "singing in the trees and the water running fast over the stones after the rain of the night before. "
         "The path turns north at the old mill, climbs through the beech wood and comes out on the ridge, where "
         "the wind is cold even in May and the view reaches the sea on a clear day.";
}

// The logit errors of plain Q4_0 and of the file `a` writes (its type set
// here), and its report, on a tiny model quantized from calibration text.
struct AgainstPlain {
  AwareQuantizeReport report;
  double plain = 0.0, aware = 0.0;
};
AgainstPlain against_plain_q4_0(const TinyModelSpec& spec, const std::string& tag, AwareQuantizeOptions a) {
  LoadedTinyModel m(tag, spec);
  a.quantize.type = DType::Q4_0;
  a.quantize.pure = true;
  a.quantize.n_threads = 2;
  a.calibration_text = calibration_text();
  a.calibration_tokens = 256;
  const std::string plain = m.path + ".plain.gguf", aware = m.path + ".aware.gguf";
  quantize_model(m.path, plain, a.quantize);
  AgainstPlain out;
  out.report = quantize_aware(m.path, aware, a);
  out.plain = logit_error(*m.model, plain);
  out.aware = logit_error(*m.model, aware);
  return out;
}

TEST(Awq, LowersTheErrorOfFourBitRoundingOnUnseenText) {
  TinyModelSpec spec = spec_with_norms(false);
  spec.outlier_channels = 4;
  spec.outlier_scale = 12.0f;
  AwareQuantizeOptions a;
  a.awq = true;
  a.awq_samples = 64;
  const AgainstPlain r = against_plain_q4_0(spec, "awq_gain", a);
  ASSERT_EQ(r.report.awq.size(), 2u);
  EXPECT_GT(r.report.awq_samples, 48);  // every 4th of the text's ~250 positions
  for (const AwqLayerReport& l : r.report.awq)
    for (const AwqGroupReport& g : l.groups) EXPECT_LE(g.error_awq, g.error_plain);
  EXPECT_LT(r.aware, 0.8 * r.plain) << "plain " << r.plain << ", awq " << r.aware;
}

TEST(Gptq, LowersTheErrorOfFourBitRoundingOnUnseenText) {
  AwareQuantizeOptions a;
  a.gptq = true;
  a.gptq_inputs = kAllGptqInputs;
  a.awq_samples = 256;  // every position
  const AgainstPlain r = against_plain_q4_0(spec_with_norms(false), "gptq_gain", a);
  ASSERT_EQ(r.report.gptq.size(), 2u);
  for (const GptqLayerReport& l : r.report.gptq)
    for (const GptqGroupReport& g : l.groups) {
      EXPECT_TRUE(g.done);
      EXPECT_LT(g.error_gptq, g.error_rtn);
    }
  EXPECT_LT(r.aware, 0.8 * r.plain) << "plain " << r.plain << ", gptq " << r.aware;
}

// llama-imatrix's file for the tiny model, from its inputs on `text`: per
// matrix, each column's sum of squares over the positions and their count
// (`uniform`: every column the same, an importance matrix that knows nothing).
void write_importance_matrix(const Model& model, const std::string& text, const std::string& path,
                             bool uniform = false) {
  const ModelConfig& c = model.config();
  AwqInputs inputs(c, 256, 1);
  SessionOptions so;
  so.n_ctx = 256;
  Session session(model, so);
  session.set_projection_observer(&inputs);
  evaluate_calibration_text(session, text, 256);
  session.set_projection_observer(nullptr);
  const int64_t n = inputs.samples();
  ThreadPool pool(1);
  FloatDecoder d = load_float_decoder(model.file(), c, false, pool);
  gguf::Writer w;
  w.set_string("general.type", "imatrix");
  for (int l = 0; l < c.n_layer; ++l)
    for (int i = 0; i < kAwqInputs; ++i) {
      const int64_t cols = inputs.cols(AwqInput(i));
      std::vector<float> sums(static_cast<size_t>(cols), 0.0f);
      const std::vector<float>& x = inputs.rows(l, AwqInput(i));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < cols; ++j) sums[static_cast<size_t>(j)] += x[t * cols + j] * x[t * cols + j];
      const float count = static_cast<float>(n);
      if (uniform) std::fill(sums.begin(), sums.end(), count);
      for (const FloatTensor* m : matrices_reading(d.layers[static_cast<size_t>(l)], AwqInput(i))) {
        w.add_tensor(m->name + ".in_sum2", DType::F32, {cols}, gguf::bytes_of<float>(sums));
        w.add_tensor(m->name + ".counts", DType::F32, {1}, gguf::bytes_of<float>(std::vector<float>{count}));
      }
    }
  w.write(path);
}

TEST(Imatrix, LlamaCppsImportanceMatrixLowersTheErrorOfFourBitRoundingOnUnseenText) {
  TinyModelSpec spec = spec_with_norms(false);
  spec.outlier_channels = 4;
  spec.outlier_scale = 12.0f;
  LoadedTinyModel m("imatrix_gain", spec);
  const auto with_imatrix = [&](bool uniform) {
    const std::string imatrix = m.path + ".imatrix.gguf";
    write_importance_matrix(*m.model, calibration_text(), imatrix, uniform);
    AwareQuantizeOptions a;
    a.imatrix = imatrix;
    const AgainstPlain r = against_plain_q4_0(spec, "imatrix_gain_q", a);
    std::filesystem::remove(imatrix);
    return r;
  };
  const AgainstPlain measured = with_imatrix(false), uniform = with_imatrix(true);
  EXPECT_LT(measured.aware, 0.8 * measured.plain) << "plain " << measured.plain << ", imatrix " << measured.aware;
  // The searched scales alone (every column alike) gain less: the importance is what helps.
  EXPECT_LT(measured.aware, 0.85 * uniform.aware) << "uniform " << uniform.aware << ", imatrix " << measured.aware;
}

TEST(Imatrix, IsRefusedForAnotherModelAnotherFormatOrWithTransformsThatChangeItsInputs) {
  LoadedTinyModel m("imatrix_bad");
  const std::string imatrix = m.path + ".imatrix.gguf";
  write_importance_matrix(*m.model, calibration_text(), imatrix);
  const auto error = [&](AwareQuantizeOptions a, const std::string& model_path) {
    a.imatrix = imatrix;
    a.quantize.n_threads = 1;
    try {
      quantize_aware(model_path, m.path + ".out.gguf", a);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  AwareQuantizeOptions a;
  a.quantize.type = DType::Q4_K;
  EXPECT_NE(error(a, m.path).find("not q4_K"), std::string::npos) << error(a, m.path);
  a.quantize.type = DType::Q4_0;
  a.awq = true;
  EXPECT_NE(error(a, m.path).find("--awq change them"), std::string::npos) << error(a, m.path);
  a.awq = false;
  a.rotate = true;
  EXPECT_NE(error(a, m.path).find("--awq change them"), std::string::npos);
  a.rotate = false;
  a.gptq = true;
  a.gptq_inputs = kAllGptqInputs;
  EXPECT_NE(error(a, m.path).find("leaves none"), std::string::npos) << error(a, m.path);
  a.gptq = false;
  TinyModelSpec wider = spec_with_norms(false);
  wider.n_embd *= 2;
  LoadedTinyModel other("imatrix_other", wider);
  const std::string e = error(a, other.path);
  EXPECT_NE(e.find("in the model (a file made for another model)"), std::string::npos) << e;
  std::filesystem::remove(imatrix);
}

// A K mix with an imatrix: every matrix the imatrix has an entry for is
// written by its format's weighted quantizer (llama.cpp's bytes: the kernels'
// GgmlFixture test), the others (the output head, vectors) as without one.
TEST(Imatrix, KQuantFilesWeighEveryMatrixTheImatrixCovers) {
  LoadedTinyModel m("imatrix_k", testing::wide_tiny_spec());
  const std::string imatrix = m.path + ".imatrix.gguf", out_path = m.path + ".q4_k_m.gguf";
  write_importance_matrix(*m.model, calibration_text(), imatrix);
  const ImportanceMatrix im = read_importance_matrix(imatrix);
  QuantizeOptions q;
  q.type = DType::Q4_K;
  q.mix = QuantMix::Medium;
  q.importance = &im;
  q.n_threads = 1;
  quantize_model(m.path, out_path, q);
  const gguf::File in = gguf::File::open(m.path), out = gguf::File::open(out_path);
  int weighted = 0, weighted_q6 = 0, plain = 0;
  for (const gguf::TensorInfo& t : out.tensors()) {
    if (t.type == DType::F32) continue;
    const gguf::TensorInfo* src = in.find_tensor(t.name);
    ASSERT_NE(src, nullptr) << t.name;
    const int64_t cols = t.ne[0], rows = t.n_elements() / cols;
    const std::vector<float>* w = im.find(t.name, cols);
    const size_t rb = row_bytes(t.type, cols);
    std::vector<float> row(static_cast<size_t>(cols));
    std::vector<uint8_t> want(rb * static_cast<size_t>(rows)), unweighted(want.size());
    for (int64_t r = 0; r < rows; ++r) {
      kernels::quant_kernels(src->type).dequantize_row(src->data + r * row_bytes(src->type, cols), row.data(), cols);
      kernels::quant_kernels(t.type).quantize_weights(row.data(), unweighted.data() + r * rb, cols);
      if (w)
        kernels::weighted_quantizer(t.type)(row.data(), want.data() + r * rb, cols, w->data());
      else
        std::copy(unweighted.begin() + r * rb, unweighted.begin() + (r + 1) * rb, want.begin() + r * rb);
    }
    EXPECT_TRUE(std::equal(want.begin(), want.end(), t.data)) << t.name << " (" << dtype_name(t.type) << ")";
    if (w) EXPECT_NE(want, unweighted) << t.name << ": the weights changed nothing";
    weighted += w != nullptr;
    weighted_q6 += w != nullptr && t.type == DType::Q6_K;
    plain += w == nullptr;
  }
  EXPECT_EQ(weighted, 2 * 7);  // 2 layers x 7 projections
  EXPECT_GT(weighted_q6, 0);   // the mix's attn_v / ffn_down
  EXPECT_GT(plain, 0);         // the head and the embedding
  std::filesystem::remove(out_path);

  const auto error = [&](QuantizeOptions o, const std::string& model_path) {
    try {
      quantize_model(model_path, out_path, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  QuantizeOptions iq = q;
  iq.type = DType::IQ4_NL;
  iq.mix = QuantMix::None;
  EXPECT_NE(error(iq, m.path).find("not iq4_nl"), std::string::npos) << error(iq, m.path);
  TinyModelSpec wider = testing::wide_tiny_spec();
  wider.n_embd *= 2;
  LoadedTinyModel other("imatrix_k_other", wider);
  EXPECT_NE(error(q, other.path).find("a file made for another model"), std::string::npos) << error(q, other.path);
  ImportanceMatrix renamed;
  for (const auto& [name, v] : im.mean_squares) renamed.mean_squares["x" + name] = v;
  QuantizeOptions r = q;
  r.importance = &renamed;
  EXPECT_NE(error(r, m.path).find("no entry for any matrix of this model"), std::string::npos) << error(r, m.path);
  std::filesystem::remove(out_path);
  std::filesystem::remove(imatrix);
}

TEST(Gptq, EncodedRowsAreWrittenAsTheyAreAndOnlyInTheirType) {
  LoadedTinyModel m("encoded");
  ThreadPool pool(1);
  FloatDecoder d = load_float_decoder(m.model->file(), m.model->config(), false, pool);
  const FloatTensor& q_proj = d.layers[0].q;
  QuantizeOptions q;
  q.type = DType::Q4_0;
  q.pure = true;
  q.replacements = decoder_tensors(d);
  std::vector<uint8_t> bytes(row_bytes(DType::Q4_0, q_proj.cols()) * q_proj.rows());
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  q.encoded[q_proj.name] = {DType::Q4_0, bytes};
  const std::string out = m.path + ".encoded.gguf";
  quantize_model(m.path, out, q);
  {
    const gguf::File f = gguf::File::open(out);
    const gguf::TensorInfo* t = f.find_tensor(q_proj.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(std::vector<uint8_t>(t->data, t->data + t->nbytes), bytes);
  }
  std::filesystem::remove(out);
  q.encoded[q_proj.name].type = DType::Q8_0;
  try {
    quantize_model(m.path, out, q);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was encoded as q8_0"), std::string::npos) << e.what();
  }
  std::filesystem::remove(out);
}

// |(Ŵ - W) X|² of a matrix rounded to Q4_0, against the unclipped original.
double rounding_error(const FloatTensor& rounded_from, const FloatTensor& original, const std::vector<float>& x,
                      int64_t n) {
  const int64_t cols = original.cols();
  std::vector<uint8_t> q(row_bytes(DType::Q4_0, cols));
  std::vector<float> back(static_cast<size_t>(cols));
  const auto& k = kernels::quant_kernels(DType::Q4_0);
  double e = 0.0;
  for (int64_t r = 0; r < original.rows(); ++r) {
    k.quantize_weights(rounded_from.row(r), q.data(), cols);
    k.dequantize_row(q.data(), back.data(), cols);
    for (int64_t t = 0; t < n; ++t) {
      double d = 0.0;
      for (int64_t j = 0; j < cols; ++j) d += double{back[j] - original.row(r)[j]} * x[t * cols + j];
      e += d * d;
    }
  }
  return e;
}

TEST(Awq, ClippingLowersTheRoundingErrorOfBlocksWithAnOutlierWeight) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  FloatTensor w;
  w.name = "blk.0.ffn_up.weight";
  w.ne = {64, 24};
  for (int64_t i = 0; i < 64 * 24; ++i) w.data.push_back(normal(rng));
  for (int64_t r = 0; r < 24; ++r) w.row(r)[r % 32] = 9.0f;  // one large weight per row: its block rounds coarsely
  const int64_t n = 128;
  std::vector<float> x;
  for (int64_t i = 0; i < n * 64; ++i) x.push_back(normal(rng));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < 32; ++j) x[t * 64 + j] *= 0.05f;  // ... where its inputs are small
  const FloatTensor original = w;
  ThreadPool pool(2);
  const double share = clip_awq_weights(w, DType::Q4_0, x, n, pool);
  EXPECT_GT(share, 0.3) << "the blocks with an outlier are clipped";
  EXPECT_LT(rounding_error(w, original, x, n), 0.9 * rounding_error(original, original, x, n));
  FloatTensor k_quant = original;
  k_quant.ne = {256, 6};
  EXPECT_EQ(clip_awq_weights(k_quant, DType::Q4_K, x, 0, pool), 0.0) << "K-quants are not clipped";
}

TEST(Awq, RefusesTooLittleTextAndOtherArchitectures) {
  LoadedTinyModel m("awq_bad");
  AwareQuantizeOptions a;
  a.quantize.type = DType::Q4_0;
  a.awq = true;
  a.calibration_text = "Too short.";
  a.calibration_tokens = 256;
  a.awq_samples = 64;  // every 4th position: "Too short." gives 3
  try {
    quantize_aware(m.path, m.path + ".out.gguf", a);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least 16"), std::string::npos) << e.what();
  }
  a.awq = false;
  EXPECT_THROW(quantize_aware(m.path, m.path + ".out.gguf", a), Error) << "neither --rotate nor --awq";
  ModelConfig other = m.model->config();
  other.arch = "gemma3";
  ThreadPool pool(1);
  try {
    load_float_decoder(m.model->file(), other, false, pool);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gemma3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kestrel
