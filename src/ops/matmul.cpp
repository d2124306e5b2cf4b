#include "ops/matmul.h"

#include <algorithm>
#include <span>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "kernels/quant_kernels.h"
#include "platform/dispatch.h"
#include "platform/mmap.h"

namespace kestrel {
namespace {

// Weight rows handed to a thread at a time on the vec_dot path: enough to
// amortise the dynamic scheduling, small enough that both cores finish together
// on 576-wide layers.
constexpr int64_t kRowGrain = 16;

// Batches from this size on take the panel path. Decode (1 token) too for
// most formats: the panel kernel streams weights as fast as vec_dot on the GGUF
// rows or faster (bench/micro/gemm_bench.cpp, docs/performance.md), holds them
// once (the mapped pages are dropped once packed), and one kernel for every
// batch size makes a token's logits independent of what else is in its batch.
//  - AVX2 (maddubs + madd in place of VNNI), Zen 3 (EPYC, 2 cores shared): the
//    panel kernel beat one vec_dot per row and token at every batch size and for
//    every format (gemm/<type>/{avx2,vecdot-avx2}/2048x2048/t<n>, one thread,
//    CPU time, us): t1 Q4_0 274 vs 538, Q4_1 349/594, Q8_0 598/833, Q4_K
//    398/631, Q5_K 519/743, Q6_K 647/761; t2 333/768 (Q4_0) .. 690/908 (Q6_K);
//    t8 2.5-3.8x and t64 1.8-4x faster (Q2_K, Q3_K, IQ4_*: 15-50x, their
//    vec_dot being scalar here). End to end, Qwen2.5-1.5B Q4_K_M (Q6_K output
//    and half of ffn_down) decoded 1.09x faster, and its GGUF rows (0.5 GB) are
//    dropped.
//  - AVX-512 VNNI, Sapphire Rapids: Q5_K and Q6_K decoded on vec_dot while their
//    panels held float scales (Q6_K 320 bytes per 256 weights: end to end 7-13 %
//    slower on a Zen 4 VM); with the GGUF's own int8 scales and widths (210
//    bytes, as the file) one thread runs them 1.5-1.6x faster than vec_dot
//    (gemm/q{5,6}_K/{vnni,vecdot-avx512}/2048x2048/t1: 279-316 vs 463 us,
//    313-331 vs 502-510 us).
// Q5_0 decodes on its panels too (session 20; before, on vec_dot "for
// numerics"). Its one-token panels decode Qwen2.5-0.5B faster and let the GGUF
// rows' pages go; the logits move by summation order only, which this model
// amplifies as SmolLM2 and gemma do: llama.cpp's own AVX-512 and AVX2 builds
// differ by 0.04-0.07 mean |logit| on LogitsGolden's prompts, and the golden
// test's near-tie threshold comes from that spread (tau 0.109: a greedy flip
// at a 0.106 gap seen on an AVX-512 machine sits inside it; 64 of 64 greedy
// tokens on an AVX2 Zen 3 machine, 51 of 64 with vec_dot decode).
// Panels packed between two returns of mapped pages (ops/matmul.h
// PackedWeightSlot): 4096 rows, a few MB of GGUF rows.
constexpr int64_t kDropSlicePanels = 256;
// AMX from one whole 16-token tile on (smaller batches have no tile to fill).
constexpr int64_t kMinAmxTokens = 16;

std::atomic<size_t> g_packed_bytes{0};

size_t align64(size_t n) { return (n + 63) & ~size_t{63}; }

}  // namespace

std::shared_ptr<PackedWeightSlot> make_packed_weight_slot() { return std::make_shared<PackedWeightSlot>(); }

size_t packed_weight_bytes() { return g_packed_bytes.load(std::memory_order_relaxed); }

PackedWeight::PackedWeight(const kernels::PanelFormat& format, int64_t rows, int64_t cols)
    : format_(format),
      panels_((rows + kernels::kPanelRows - 1) / kernels::kPanelRows),
      panel_bytes_(kernels::panel_bytes(format, cols)),
      data_(std::max<size_t>(bytes(), 64), PageSize::Huge) {
  g_packed_bytes.fetch_add(bytes(), std::memory_order_relaxed);
}

PackedWeight::~PackedWeight() { g_packed_bytes.fetch_sub(bytes(), std::memory_order_relaxed); }

const PackedWeight& PackedWeightSlot::get(const Weight& w, ThreadPool& pool, Isa isa) {
  if (const PackedWeight* p = ready_.load(std::memory_order_acquire)) return *p;
  std::call_once(once_, [&] {
    const kernels::PanelFormat* f = kernels::panel_format(w.type);
    if (!f) fail("matmul: no panel layout for ", dtype_name(w.type), " weight '", w.name, "'");
    auto packed = std::make_unique<PackedWeight>(*f, w.rows, w.cols);
    uint8_t* out = packed->data();
    // Every batch size reads the panels: the GGUF rows' pages go back, so the
    // weight is resident once, not twice. A mapped weight is packed in slices,
    // each slice's rows given back as soon as it is packed, so that a load
    // never holds a whole large matrix twice either (its peak RSS).
    const int64_t panels = packed->panels();
    const int64_t slice = w.mapped() ? kDropSlicePanels : panels;
    for (int64_t s0 = 0; s0 < panels; s0 += slice) {
      const int64_t s1 = std::min(panels, s0 + slice);
      pool.parallel_for(s1 - s0, [&](int64_t b, int64_t e, int) {
        kernels::pack_panels(w.type, w.data, w.row_stride, w.rows, w.cols, s0 + b, s0 + e, out);
      });
      if (w.mapped()) {
        const int64_t r0 = s0 * kernels::kPanelRows, r1 = std::min(w.rows, s1 * kernels::kPanelRows);
        drop_mapped_pages(w.row(r0), static_cast<size_t>(r1 - r0) * w.row_stride);
      }
    }
    packed_ = std::move(packed);
    ready_.store(packed_.get(), std::memory_order_release);
    // The pages the slices shared at their edges (drop_mapped_pages keeps partial pages).
    if (w.mapped()) drop_mapped_pages(w.data, w.bytes());
  });
  return *packed_;
}

kernels::QuantizeRowFn activation_quantizer(const kernels::QuantKernels& act, const MatmulOptions& options) {
  if (options.activation_bits == 4 && act.quantize_row_a4 != nullptr) return act.quantize_row_a4;
  return act.quantize_row;
}

MatmulPath matmul_path(DType type, int64_t n_tokens, Isa isa, const MatmulOptions& options) {
  if (options.decode_kernels) n_tokens = 1;
  if (!options.allow_panels || !kernels::panel_gemm(type, isa)) return MatmulPath::VecDot;
  if (options.amx == AmxUse::Always && n_tokens >= kMinAmxTokens && kernels::panel_gemm_amx(type, isa))
    return MatmulPath::PanelsAmx;
  return MatmulPath::Panels;
}

namespace {

void matmul_vec_dot(const MatmulContext& ctx, const Weight& w, const uint8_t* act, size_t act_stride,
                    int64_t n_tokens, float* y) {
  const auto& kern = kernels::quant_kernels(w.type, ctx.isa);
  const int64_t k = w.cols;
  const int64_t m = w.rows;
  ctx.pool.parallel_for_dynamic(m, kRowGrain, [&](int64_t r0, int64_t r1, int) {
    if (kern.gemv != nullptr && n_tokens == 1) return kern.gemv(k, w.row(r0), w.row_stride, r1 - r0, act, y + r0);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* wrow = w.row(r);
      for (int64_t t = 0; t < n_tokens; ++t) y[t * m + r] = kern.vec_dot(k, wrow, act + t * act_stride);
    }
  });
}

// F16 / BF16 weights: the activations rounded to the weight's type once, as
// vec_dot's quantize_row rounds them, then widened back to floats (exact), so
// the rows x tokens kernel gives vec_dot's bits while widening each weight
// element once per few tokens.
void matmul_float_gemm(const MatmulContext& ctx, const Weight& w, const kernels::QuantKernels& kern, const float* x,
                       int64_t n_tokens, float* y) {
  const int64_t k = w.cols, m = w.rows;
  auto* act = static_cast<float*>(ctx.scratch.get(static_cast<size_t>(k * n_tokens) * sizeof(float)));
  ctx.pool.parallel_for(n_tokens, [&](int64_t b, int64_t e, int) {
    thread_local std::vector<uint8_t> rounded;  // every F16/BF16 matmul of every decode step: no allocation
    rounded.resize(row_bytes(kern.vec_dot_type, k));
    for (int64_t t = b; t < e; ++t) {
      kern.quantize_row(x + t * k, rounded.data(), k);
      kern.dequantize_row(rounded.data(), act + t * k, k);
    }
  });
  // Whole row tiles per chunk (3 rows on AVX2, 4 on AVX-512).
  constexpr int64_t kFloatRowGrain = 48;
  ctx.pool.parallel_for_dynamic(m, kFloatRowGrain, [&](int64_t r0, int64_t r1, int) {
    kern.float_gemm(k, w.row(r0), w.row_stride, r1 - r0, act, n_tokens, y + r0, m);
  });
}

// Panels per scheduling chunk: at least 2 chunks per thread so a core slowed by
// another process does not hold the other one up at the end.
int64_t panel_grain(int64_t panels, int n_threads) {
  return std::clamp<int64_t>(panels / (4 * static_cast<int64_t>(n_threads)), 1, 8);
}

// Tokens per pass over a chunk's panels. A panel kernel call reads every
// token's activation row; with all of a long prompt's tokens in one call,
// each panel streamed them from L3 again (Q4_K at 512 tokens ran 11 % slower
// than at 64, whose rows stay in L2). Blocks of about 128 KB of activation
// rows stay in L2 while the chunk's panels (up to 8) go over them. The last
// block takes the remainder when it would be under half a block (no call of a
// few tokens). The blocking never changes a result: the kernels sum each
// token as a one-token call does (kernels/packed_gemm.h).
struct TokenBlocks {
  int64_t size;
  int64_t end_of(int64_t t0, int64_t n_tokens) const {
    return n_tokens - (t0 + size) < size / 2 ? n_tokens : t0 + size;
  }
};
TokenBlocks token_blocks(size_t act_stride) {
  constexpr size_t kBlockBytes = 128 * 1024;
  // A multiple of 24 tokens: whole tiles of the AVX2 kernels (3, 4 or 6
  // tokens) and of the VNNI ones (8); blocks of 16 ran a quarter of Q6_K's
  // tokens through 4-token tiles instead of its 6-token ones.
  constexpr int64_t kTokensMultiple = 24;
  const int64_t fit = static_cast<int64_t>(kBlockBytes / act_stride) / kTokensMultiple * kTokensMultiple;
  return {std::max<int64_t>(kTokensMultiple, fit)};
}

// The arguments of a call over all tokens, narrowed to tokens [t0, t1).
kernels::PanelGemmArgs token_block(kernels::PanelGemmArgs a, int64_t t0, int64_t t1) {
  a.act += static_cast<size_t>(t0) * a.act_stride;
  a.groups += static_cast<size_t>(t0) * a.groups_stride;
  a.y += t0 * a.ldy;
  a.n_tokens = t1 - t0;
  return a;
}

void matmul_panels(const MatmulContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y,
                   kernels::PanelGemmFn fn, bool amx) {
  const auto& kern = kernels::quant_kernels(w.type, ctx.isa);
  const auto& act_kern = kernels::quant_kernels(kern.vec_dot_type, ctx.isa);
  const kernels::QuantizeRowFn quantize_act = activation_quantizer(act_kern, ctx.options);
  const kernels::PanelFormat& f = *kernels::panel_format(w.type);
  const int64_t k = w.cols;
  const size_t act_stride = row_bytes(kern.vec_dot_type, k);
  const size_t groups_stride = static_cast<size_t>(k / f.group);
  // Scratch: [activation rows | ActGroups | AMX A tiles (AMX only)].
  const size_t act_bytes = align64(act_stride * static_cast<size_t>(n_tokens));
  const size_t groups_bytes = align64(sizeof(kernels::ActGroup) * groups_stride * static_cast<size_t>(n_tokens));
  const size_t tiles_bytes = amx ? kernels::act_tiles_bytes(f, k, n_tokens) : 0;
  auto* buf = static_cast<uint8_t*>(ctx.scratch.get(act_bytes + groups_bytes + tiles_bytes));
  auto* groups = reinterpret_cast<kernels::ActGroup*>(buf + act_bytes);
  uint8_t* act_tiles = amx ? buf + act_bytes + groups_bytes : nullptr;
  ctx.pool.parallel_for(n_tokens, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      uint8_t* row = buf + static_cast<size_t>(t) * act_stride;
      quantize_act(x + t * k, row, k);
      kernels::activation_groups(w.type, row, k, groups + static_cast<size_t>(t) * groups_stride);
    }
  });
  if (amx) {
    // Whole 16-token tiles, split over the threads.
    const int64_t n_tiles = n_tokens / kernels::kAmxTileTokens;
    const size_t tile_bytes = kernels::act_tiles_bytes(f, k, kernels::kAmxTileTokens);
    ctx.pool.parallel_for(n_tiles, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i)
        kernels::pack_act_tiles(f, buf + static_cast<size_t>(i * kernels::kAmxTileTokens) * act_stride, act_stride, k,
                                kernels::kAmxTileTokens, act_tiles + static_cast<size_t>(i) * tile_bytes);
    });
  }

  const PackedWeight& pw = w.packed->get(w, ctx.pool, ctx.isa);
  const int64_t panels = pw.panels();
  // AMX kernels read whole 16-token tiles packed for all the tokens at once: one block.
  const TokenBlocks blocks = amx ? TokenBlocks{n_tokens} : token_blocks(act_stride);
  ctx.pool.parallel_for_dynamic(panels, panel_grain(panels, ctx.pool.size()), [&](int64_t p0, int64_t p1, int) {
    for (int64_t t0 = 0, t1; t0 < n_tokens; t0 = t1) {
      t1 = blocks.end_of(t0, n_tokens);
      for (int64_t p = p0; p < p1; ++p) {
        const kernels::PanelGemmArgs all{
            k,
            pw.panel(p),
            static_cast<int>(std::min<int64_t>(kernels::kPanelRows, w.rows - p * kernels::kPanelRows)),
            buf,
            act_stride,
            groups,
            groups_stride,
            n_tokens,
            y + p * kernels::kPanelRows,
            w.rows,
            act_tiles};
        fn(f, token_block(all, t0, t1));
      }
    }
  });
}

// Several panel-path weights over the same activations (QKV; gate and up): the
// activations are quantized once and every weight's panels are one parallel
// region. Decode of a small model is paced by the pool's synchronisations as
// much as by memory: one region per weight (a single token's quantization runs
// on the caller), so this saves one for each extra weight; prompts save two.
// Precondition: every weight takes MatmulPath::Panels and wants the same
// activation format.
void matmul_panels_shared(const MatmulContext& ctx, std::span<const Weight* const> ws, const float* x,
                          int64_t n_tokens, std::span<float* const> ys) {
  const Weight& w0 = *ws[0];
  const int64_t k = w0.cols;
  const DType act_type = kernels::quant_kernels(w0.type, ctx.isa).vec_dot_type;
  const auto& act_kern = kernels::quant_kernels(act_type, ctx.isa);
  const kernels::QuantizeRowFn quantize_act = activation_quantizer(act_kern, ctx.options);
  const size_t act_stride = row_bytes(act_type, k);
  const size_t act_bytes = align64(act_stride * static_cast<size_t>(n_tokens));
  // Scratch: [activation rows | ActGroups of weight 0 | of weight 1 | ...].
  std::vector<size_t> groups_stride(ws.size()), groups_at(ws.size());
  size_t total = act_bytes;
  for (size_t i = 0; i < ws.size(); ++i) {
    groups_stride[i] = static_cast<size_t>(k / kernels::panel_format(ws[i]->type)->group);
    groups_at[i] = total;
    total += align64(sizeof(kernels::ActGroup) * groups_stride[i] * static_cast<size_t>(n_tokens));
  }
  auto* buf = static_cast<uint8_t*>(ctx.scratch.get(total));
  auto groups = [&](size_t i) { return reinterpret_cast<kernels::ActGroup*>(buf + groups_at[i]); };
  ctx.pool.parallel_for(n_tokens, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      uint8_t* row = buf + static_cast<size_t>(t) * act_stride;
      quantize_act(x + t * k, row, k);
      for (size_t i = 0; i < ws.size(); ++i)
        kernels::activation_groups(ws[i]->type, row, k, groups(i) + static_cast<size_t>(t) * groups_stride[i]);
    }
  });

  // Panels of all weights as one index space: weight i owns [first[i], first[i + 1]).
  std::vector<const PackedWeight*> packed(ws.size());
  std::vector<int64_t> first(ws.size() + 1, 0);
  for (size_t i = 0; i < ws.size(); ++i) {
    packed[i] = &ws[i]->packed->get(*ws[i], ctx.pool, ctx.isa);
    first[i + 1] = first[i] + packed[i]->panels();
  }
  const int64_t panels = first.back();
  const TokenBlocks blocks = token_blocks(act_stride);
  ctx.pool.parallel_for_dynamic(panels, panel_grain(panels, ctx.pool.size()), [&](int64_t p0, int64_t p1, int) {
    for (int64_t t0 = 0, t1; t0 < n_tokens; t0 = t1) {
      t1 = blocks.end_of(t0, n_tokens);
      size_t i = 0;
      for (int64_t p = p0; p < p1; ++p) {
        while (p >= first[i + 1]) ++i;
        const Weight& w = *ws[i];
        const int64_t local = p - first[i];
        const kernels::PanelFormat& f = *kernels::panel_format(w.type);
        const kernels::PanelGemmArgs all{
            k,
            packed[i]->panel(local),
            static_cast<int>(std::min<int64_t>(kernels::kPanelRows, w.rows - local * kernels::kPanelRows)),
            buf,
            act_stride,
            groups(i),
            groups_stride[i],
            n_tokens,
            ys[i] + local * kernels::kPanelRows,
            w.rows,
            nullptr};
        kernels::panel_gemm(w.type, ctx.isa)(f, token_block(all, t0, t1));
      }
    }
  });
}

}  // namespace

void prepare_weight(const MatmulContext& ctx, const Weight& w) {
  if (w.empty()) return;
  if (matmul_path(w.type, 64, ctx.isa, MatmulOptions{ctx.options.allow_panels, AmxUse::Never}) != MatmulPath::VecDot)
    w.packed->get(w, ctx.pool, ctx.isa);
}

void matmul(const MatmulContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y) {
  if (n_tokens <= 0) return;
  const MatmulPath path = matmul_path(w.type, n_tokens, ctx.isa, ctx.options);
  if (path != MatmulPath::VecDot) {
    const bool amx = path == MatmulPath::PanelsAmx;
    matmul_panels(ctx, w, x, n_tokens, y,
                  amx ? kernels::panel_gemm_amx(w.type, ctx.isa) : kernels::panel_gemm(w.type, ctx.isa), amx);
    return;
  }
  const auto& kern = kernels::quant_kernels(w.type, ctx.isa);
  const int64_t k = w.cols;
  if (kern.float_gemm != nullptr && ctx.options.allow_panels) {
    matmul_float_gemm(ctx, w, kern, x, n_tokens, y);
    return;
  }
  // Quantize the activations once: [n_tokens] rows of vec_dot_type.
  const void* act = x;
  size_t act_stride = static_cast<size_t>(k) * sizeof(float);
  if (kern.vec_dot_type != DType::F32) {
    const auto& act_kern = kernels::quant_kernels(kern.vec_dot_type, ctx.isa);
    const kernels::QuantizeRowFn quantize_act = activation_quantizer(act_kern, ctx.options);
    act_stride = row_bytes(kern.vec_dot_type, k);
    auto* buf = static_cast<uint8_t*>(ctx.scratch.get(act_stride * static_cast<size_t>(n_tokens)));
    ctx.pool.parallel_for(n_tokens, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) quantize_act(x + t * k, buf + t * act_stride, k);
    });
    act = buf;
  }
  matmul_vec_dot(ctx, w, static_cast<const uint8_t*>(act), act_stride, n_tokens, y);
}

void add_bias(const Weight& w, const float* bias, int64_t n_tokens, float* y) {
  if (!bias) return;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < w.rows; ++r) y[t * w.rows + r] += bias[r];
}

void matmul_bias(const MatmulContext& ctx, const Weight& w, const float* bias, const float* x,
                 int64_t n_tokens, float* y) {
  matmul(ctx, w, x, n_tokens, y);
  add_bias(w, bias, n_tokens, y);
}

void matmul_shared_input(const MatmulContext& ctx, std::span<const SharedInputOutput> outs, const float* x,
                         int64_t n_tokens) {
  if (n_tokens <= 0 || outs.empty()) return;
  bool fused = outs.size() > 1;
  const DType act_type = kernels::quant_kernels(outs[0].w->type, ctx.isa).vec_dot_type;
  for (const auto& o : outs)
    fused = fused && o.w->cols == outs[0].w->cols &&
            matmul_path(o.w->type, n_tokens, ctx.isa, ctx.options) == MatmulPath::Panels &&
            kernels::quant_kernels(o.w->type, ctx.isa).vec_dot_type == act_type;
  if (!fused) {
    for (const auto& o : outs) matmul_bias(ctx, *o.w, o.bias, x, n_tokens, o.y);
    return;
  }
  std::vector<const Weight*> ws;
  std::vector<float*> ys;
  for (const auto& o : outs) {
    ws.push_back(o.w);
    ys.push_back(o.y);
  }
  matmul_panels_shared(ctx, ws, x, n_tokens, ys);
  for (const auto& o : outs) add_bias(*o.w, o.bias, n_tokens, o.y);
}

}  // namespace kestrel
