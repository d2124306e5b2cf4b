#include "runtime/eagle3_drafter.h"

#include <algorithm>
#include <chrono>

#include "platform/dispatch.h"

namespace kestrel {
namespace {

constexpr int64_t kCatchUpBatch = 256;  // head positions per forward pass when catching up

}  // namespace

Eagle3Drafter::Eagle3Drafter(std::shared_ptr<const Eagle3Head> head, std::shared_ptr<TargetFeatures> features, int seq,
                             const EngineConfig& engine, int64_t n_ctx, int n_min, float p_min)
    : ChainDrafter(n_min, p_min),
      head_(std::move(head)),
      features_(std::move(features)),
      seq_(seq),
      isa_(runnable_isa(engine.isa)),
      pool_(engine.n_threads),
      cache_(head_->kv_shape(n_ctx, 1), DType::F16, isa_),
      ctx_{pool_, scratch_, isa_, engine.matmul,
           kernels::attention_kernel_set(DType::F16, kernels::AttentionAlgo::Exact, isa_)} {
  // The head only proposes: its kernels need not match any decode step.
  ctx_.matmul.decode_kernels = false;
  head_->prepare(ctx_);
}

std::span<const float> Eagle3Drafter::catch_up(std::span<const int32_t> context, int64_t from, int64_t to) {
  const int64_t E = head_->config().layer.n_embd, F = head_->features_width();
  const int64_t V = head_->config().n_draft_vocab;
  logits_.resize(static_cast<size_t>(V));
  for (int64_t start = from; start <= to; start += kCatchUpBatch) {
    const int64_t n = std::min(kCatchUpBatch, to + 1 - start);
    features_rows_.resize(static_cast<size_t>(n * F));
    g_.resize(static_cast<size_t>(n * E));
    prenorm_.resize(static_cast<size_t>(n * E));
    batch_.clear();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = start + i;
      features_->row(seq_, pos, &features_rows_[static_cast<size_t>(i * F)]);
      batch_.add(context[static_cast<size_t>(pos + 1)], static_cast<int32_t>(pos), 0, pos == to);
    }
    head_->encode(features_rows_.data(), n, g_.data(), ctx_);
    head_->decode(batch_, g_.data(), cache_, ctx_, prenorm_.data(), logits_.data());
  }
  // The last row's pre-norm output seeds the chain.
  const size_t last = prenorm_.size() - static_cast<size_t>(E);
  std::copy(prenorm_.begin() + static_cast<std::ptrdiff_t>(last), prenorm_.end(), prenorm_.begin());
  prenorm_.resize(static_cast<size_t>(E));
  return logits_;
}

std::span<const float> Eagle3Drafter::step(int32_t token) {
  batch_.clear();
  batch_.add(token, static_cast<int32_t>(pos_++), 0, true);
  std::swap(g_, prenorm_);  // the last output is this step's g; decode reads g and writes prenorm
  prenorm_.resize(g_.size());
  head_->decode(batch_, g_.data(), cache_, ctx_, prenorm_.data(), logits_.data());
  return logits_;
}

void Eagle3Drafter::rewind() {
  pos_ = synced_;
  cache_.set_seq_len(0, synced_);
  prenorm_ = seed_;
}

std::span<const float> Eagle3Drafter::sync(std::span<const int32_t> context, int64_t last, int64_t& n_eval) {
  // Keep the head positions whose tokens [0, P+1] still match the context.
  const size_t common = static_cast<size_t>(
      std::mismatch(seen_.begin(), seen_.end(), context.begin(), context.end()).first - seen_.begin());
  synced_ = std::min<int64_t>({synced_, static_cast<int64_t>(common) - 1, last});
  synced_ = std::max<int64_t>(synced_, 0);
  cache_.set_seq_len(0, synced_);
  n_eval = last + 1 - synced_;
  std::span<const float> logits = catch_up(context, synced_, last);
  synced_ = pos_ = last + 1;
  seen_.assign(context.begin(), context.end());
  seed_ = prenorm_;
  return logits;
}

void Eagle3Drafter::prefill(std::span<const int32_t> prompt) {
  // Up to the prompt's next-to-last position: the last one pairs with the
  // pending token, which the first draft brings.
  const int64_t n = static_cast<int64_t>(prompt.size());
  int64_t n_eval = 0;
  if (n >= 2) sync(prompt, n - 2, n_eval);
}

std::span<const float> Eagle3Drafter::start(std::span<const int32_t> context) {
  catch_up_seconds_ = 0.0;
  const int64_t n = static_cast<int64_t>(context.size());
  // The head's position P pairs the target's features at P with token P+1:
  // the last one it can compute is n-2 (the pending token's predecessor).
  if (n < 2) return {};
  const auto t0 = std::chrono::steady_clock::now();
  int64_t n_eval = 0;
  std::span<const float> logits = sync(context, n - 2, n_eval);
  // All but the last position evaluated are catch-up.
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  catch_up_seconds_ = seconds * static_cast<double>(n_eval - 1) / static_cast<double>(n_eval);
  return logits;
}

}  // namespace kestrel
