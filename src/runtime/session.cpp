#include "runtime/session.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/stop_matcher.h"

namespace kestrel {
namespace {

int64_t resolve_ctx(const Model& m, int64_t want) {
  const int64_t train = m.config().n_ctx_train > 0 ? m.config().n_ctx_train : 4096;
  if (want <= 0) return train;
  return want;
}

// A draft tree's branches past the first take KV sequences 1.. of their own,
// sharing the history's blocks: each needs the blocks of its pending token and
// draft, and a copy of the shared block it starts inside.
KvShape session_kv_shape(const Model& m, int64_t n_ctx, const DecodeConfig& d) {
  KvShape shape = m.kv_shape(n_ctx, 1);
  if (d.policy == DecodePolicy::Plain || d.draft_branches <= 1) return shape;
  shape.n_seq = std::min(d.draft_branches, kMaxDraftBranches);
  shape.n_pool = n_ctx + (shape.n_seq - 1) * (int64_t{d.draft_max} + 1 + 2 * KvCache::kBlock);
  return shape;
}

int checked_batch(int n_batch) {
  if (n_batch <= 0) fail("session: batch size must be positive, got ", n_batch);
  return n_batch;
}

}  // namespace

Session::Session(const Model& model, const SessionOptions& options)
    : n_batch_(checked_batch(options.n_batch)),
      core_(model, options.engine, session_kv_shape(model, resolve_ctx(model, options.n_ctx), options.engine.decode),
            options.output_head),
      compressor_(kv_compress_spec(options.engine.kv_compress), model.config().n_layer, model.config().n_kv_head),
      drafter_(make_drafter(model, core_.config(), n_ctx())) {
  if (drafter_) core_.set_hidden_tap(drafter_->hidden_tap());
}

void Session::clear() {
  history_.clear();
  core_.cache().clear();
  compressor_.reset();
  evicted_blocks_ = 0;
}

void Session::eval(std::span<const int32_t> tokens, bool all_logits, bool decode_step) {
  const int64_t width = n_logits();  // logits per row
  if (n_past() + static_cast<int64_t>(tokens.size()) > n_ctx())
    fail("context overflow: ", n_past() + static_cast<int64_t>(tokens.size()), " tokens requested, the context holds ",
         n_ctx());
  last_evaluated_ = static_cast<int64_t>(tokens.size());
  if (tokens.empty()) return;
  // A prompt (not a decode step) is compressed once it is in the cache; its
  // last queries' attention is the metric. A decode step is, under a budget.
  const bool prompt = compressor_.on() && tokens.size() > 1 && !decode_step;
  if (prompt) core_.set_observer(compressor_.start_prompt(0, n_past() + static_cast<int64_t>(tokens.size())));
  logits_.resize(static_cast<size_t>(all_logits ? tokens.size() : 1) * width);
  size_t done = 0;
  while (done < tokens.size()) {
    const size_t n = std::min<size_t>(n_batch_, tokens.size() - done);
    batch_.clear();
    for (size_t i = 0; i < n; ++i) {
      const bool last = done + i + 1 == tokens.size();
      batch_.add(tokens[done + i], static_cast<int32_t>(n_past()) + static_cast<int32_t>(i), 0, all_logits || last,
                 decode_step);
    }
    float* out = all_logits ? logits_.data() + done * width : logits_.data();
    core_.forward(batch_, out, decode_step);
    history_.insert(history_.end(), tokens.begin() + done, tokens.begin() + done + n);
    done += n;
  }
  if (prompt) {
    core_.set_observer(nullptr);
    evicted_blocks_ += compressor_.after_prompt(core_.cache(), 0).evicted;
  } else {
    compress_after_decode();
  }
}

void Session::compress_after_decode() { evicted_blocks_ += compressor_.after_decode(core_.cache(), 0).evicted; }

const std::vector<float>& Session::verify_tree(int32_t pending, const DraftTree& tree) {
  KvCache& cache = core_.cache();
  const int64_t base = n_past(), width = n_logits();
  const int64_t deepest = tree.leaves(leaves_);
  if (leaves_.empty()) leaves_.push_back(-1);  // the pending token alone
  if (static_cast<int>(leaves_.size()) > cache.shape().n_seq)
    fail("session: a draft tree of ", leaves_.size(), " branches, the session verifies ", cache.shape().n_seq,
         " (--spec-branches)");
  if (base + 1 + deepest > n_ctx())
    fail("context overflow: ", base + 1 + deepest, " tokens requested, the context holds ", n_ctx());
  batch_.clear();
  int32_t newest = -1;  // depth-first order: a branch's nodes past the last leaf are its own
  for (size_t b = 0; b < leaves_.size(); ++b) {
    const int seq = static_cast<int>(b);
    if (seq > 0) cache.share_prefix(seq, 0, base);
    batch_.add(pending, static_cast<int32_t>(base), seq, seq == 0, true);
    tree.path(leaves_[b], path_);
    for (size_t d = 0; d < path_.size(); ++d)
      batch_.add(tree.tokens[static_cast<size_t>(path_[d])], static_cast<int32_t>(base + 1 + static_cast<int64_t>(d)),
                 seq, path_[d] > newest, true);
    newest = leaves_[b];
  }
  logits_.resize(static_cast<size_t>((1 + tree.size()) * width));
  last_evaluated_ = batch_.size();
  core_.forward(batch_, logits_.data(), true);
  return logits_;
}

void Session::keep_branch(const DraftTree& tree, int32_t node) {
  KvCache& cache = core_.cache();
  const int64_t base = n_past();
  const int64_t n = base + 1 + (node >= 0 ? tree.depth(node) : 0);
  // The first branch through `node`: in depth-first order, the first leaf at
  // or after it lies in its subtree.
  size_t keep = 0;
  while (node >= 0 && leaves_[keep] < node) ++keep;
  if (keep == 0) {
    cache.set_seq_len(0, n);
  } else {
    cache.share_prefix(0, static_cast<int>(keep), n);
    if (HiddenTap* tap = drafter_ ? drafter_->hidden_tap() : nullptr)
      tap->share_positions(0, static_cast<int>(keep), base, n);
  }
  for (size_t b = 1; b < leaves_.size(); ++b) cache.clear_seq(static_cast<int>(b));
  history_.push_back(batch_.tokens[0]);  // the pending token
  tree.path(node, path_);
  for (int32_t p : path_) history_.push_back(tree.tokens[static_cast<size_t>(p)]);
  compress_after_decode();
}

std::span<const float> Session::append(std::span<const int32_t> tokens) {
  if (tokens.empty()) fail("session: nothing to evaluate");
  eval(tokens, false, false);
  return {logits_.data(), static_cast<size_t>(n_logits())};
}

std::span<const float> Session::decode(int32_t token) {
  eval(std::span<const int32_t>(&token, 1), false, true);
  return {logits_.data(), static_cast<size_t>(n_logits())};
}

const std::vector<float>& Session::append_all_logits(std::span<const int32_t> tokens) {
  eval(tokens, true, false);
  return logits_;
}

const std::vector<float>& Session::verify(std::span<const int32_t> tokens) {
  if (tokens.empty()) fail("session: nothing to verify");
  eval(tokens, true, true);
  return logits_;
}

void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past()) fail("session: cannot cut a history of ", n_past(), " tokens to ", n);
  core_.cache().set_seq_len(0, n);
  history_.resize(static_cast<size_t>(n));
}

std::span<const float> Session::set_history(std::span<const int32_t> tokens) {
  if (tokens.empty()) fail("session: empty prompt");
  size_t common = 0;
  while (common < history_.size() && common < tokens.size() && history_[common] == tokens[common]) ++common;
  // Re-evaluate at least the last token, so that its logits are fresh.
  if (common == tokens.size()) --common;
  // A compressed history cannot be cut inside its evicted part: start over.
  if (static_cast<int64_t>(common) < core_.cache().min_len(0)) {
    clear();
    common = 0;
  }
  history_.resize(common);
  core_.cache().set_seq_len(0, static_cast<int64_t>(common));
  return append(tokens.subspan(common));
}

namespace {

// The generated text as it streams out: end of generation, stop strings,
// cancellation and the token limit decide when generation ends.
class Output {
 public:
  Output(const Tokenizer& tok, const GenerateOptions& opt, const TextCallback& on_text, GenerateResult& r)
      : tok_(tok), opt_(opt), on_text_(on_text), r_(r), decoder_(tok), stops_(opt.stop) {
    r_.finish_reason = "length";
  }
  // Tokens that may still be produced (-1: no limit).
  int64_t remaining() const {
    return opt_.max_tokens < 0 ? -1 : opt_.max_tokens - static_cast<int64_t>(r_.tokens.size());
  }
  // Emits one token; false once generation is over (this token may have ended it).
  bool push(int32_t token) {
    if (opt_.stop_at_eog && tok_.is_eog(token)) {
      r_.finish_reason = "stop";
      return false;
    }
    r_.tokens.push_back(token);
    const std::string emitted = stops_.push(decoder_.push(token));
    r_.text += emitted;
    if (!emitted.empty() && on_text_ && !on_text_(emitted)) {
      r_.finish_reason = "cancelled";
      return false;
    }
    if (stops_.matched()) {
      r_.finish_reason = "stop";
      return false;
    }
    return remaining() != 0;
  }
  // Text held back (a possible stop-string start, an incomplete UTF-8
  // character) is real output unless a stop string matched or the client left.
  void finish() {
    if (r_.finish_reason == "cancelled" || stops_.matched()) return;
    const std::string tail = stops_.flush(decoder_.flush());
    r_.text += tail;
    if (!tail.empty() && on_text_) on_text_(tail);
  }

 private:
  const Tokenizer& tok_;
  const GenerateOptions& opt_;
  const TextCallback& on_text_;
  GenerateResult& r_;
  StreamDecoder decoder_;
  StopMatcher stops_;
};

// One target pass per token.
void decode_plain(Session& session, Sampler& sampler, std::span<const float> logits, Output& out) {
  for (;;) {
    const int32_t next = sampler.sample(logits);
    sampler.accept(next);
    if (!out.push(next) || session.n_past() >= session.n_ctx()) return;
    logits = session.decode(next);
  }
}

// Speculative decoding: each round the drafter guesses what follows the
// pending token (sampled, not yet evaluated), the target evaluates the pending
// token and the guesses in one pass, and Sampler::verify walks the guesses in
// order: an accepted guess is emitted as is; the first rejected one is replaced
// by the target's own draw, and the guesses after it are dropped from the KV
// cache. With every guess accepted, the pass's last row gives one more token.
// Each emitted token is distributed as plain decoding would draw it. A draft
// tree (--spec-branches) offers several guesses for a position: Sampler::verify
// tries them in order, and the walk follows the branch of the one it takes.
void decode_speculative(Session& session, Sampler& sampler, std::span<const float> logits, Output& out,
                        const DecodeConfig& config, GenerateResult& r) {
  Drafter& drafter = *session.drafter();
  const int64_t n_vocab = session.model().config().n_vocab;
  std::vector<int32_t> context, chain, batch, children, guesses, emitted;
  DraftTree draft;
  int32_t pending = sampler.sample(logits);
  sampler.accept(pending);
  if (!out.push(pending)) return;
  for (;;) {
    const int64_t base = session.n_past();
    if (base >= session.n_ctx()) return;  // no room for the pending token
    // Every accepted guess is a token out, and the pass adds one more.
    int64_t n_max = session.n_ctx() - base - 1;
    if (out.remaining() >= 0) n_max = std::min(n_max, out.remaining() - 1);
    context.assign(session.history().begin(), session.history().end());
    context.push_back(pending);
    if (config.draft_branches > 1) {
      draft_tree(drafter, config, context, n_max, draft);
    } else {
      draft_tokens(drafter, config, context, n_max, chain);
      draft.assign_chain(chain);
    }
    // A chain is verified in the history's own sequence; row i + 1 follows node i either way.
    const bool is_chain = draft.is_chain();
    const auto t0 = std::chrono::steady_clock::now();
    if (is_chain) {
      batch.assign(1, pending);
      batch.insert(batch.end(), draft.tokens.begin(), draft.tokens.end());
    }
    const std::vector<float>& rows = is_chain ? session.verify(batch) : session.verify_tree(pending, draft);
    DraftRound round;
    round.n_pass = session.last_evaluated();
    round.pass_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    round.drafted = draft.size();
    ++r.target_passes;
    r.drafted += draft.size();
    // The verdicts, from the pending token's row down the branch of each
    // guess the target takes (Sampler::verify draws the replacement where it
    // takes none).
    auto row = [&](int32_t node) {
      return std::span<const float>(rows.data() + static_cast<size_t>(node + 1) * n_vocab,
                                    static_cast<size_t>(n_vocab));
    };
    emitted.clear();
    int32_t node = -1;
    for (;;) {
      draft.children(node, children);
      if (children.empty()) {  // every guess on the way taken: the last row gives one more
        pending = sampler.sample(row(node));
        break;
      }
      guesses.clear();
      for (int32_t c : children) guesses.push_back(draft.tokens[static_cast<size_t>(c)]);
      const int32_t token = sampler.verify(row(node), guesses);
      const auto taken = std::find(guesses.begin(), guesses.end(), token);
      if (taken == guesses.end()) {
        pending = token;
        round.rejected = true;
        break;
      }
      sampler.accept(token);
      emitted.push_back(token);
      node = children[static_cast<size_t>(taken - guesses.begin())];
    }
    sampler.accept(pending);
    if (is_chain)
      session.truncate(base + 1 + static_cast<int64_t>(emitted.size()));
    else
      session.keep_branch(draft, node);
    round.accepted = static_cast<int64_t>(emitted.size());
    r.accepted += round.accepted;
    drafter.observe(round);
    for (int32_t token : emitted)
      if (!out.push(token)) return;
    if (!out.push(pending)) return;
  }
}

}  // namespace

GenerateResult generate(Session& session, std::span<const int32_t> prompt, const GenerateOptions& opt,
                        const TextCallback& on_text) {
  using Clock = std::chrono::steady_clock;
  const Model& model = session.model();
  if (session.n_logits() != model.config().n_vocab)
    fail("generate: the session scores ", session.n_logits(), " of ", model.config().n_vocab,
         " tokens (a draft vocabulary); sampling needs them all");
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());

  SamplingParams sampling = opt.sampling;
  sampling.kind = session.config().sampler;
  Sampler sampler(sampling, model.config().n_vocab);
  for (int32_t t : prompt) sampler.accept(t);

  auto t0 = Clock::now();
  std::span<const float> logits = session.set_history(prompt);
  if (session.drafter() && opt.max_tokens != 0) session.drafter()->prefill(prompt);
  auto t1 = Clock::now();
  r.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();

  Output out(model.tokenizer(), opt, on_text, r);
  if (opt.max_tokens != 0) {
    if (session.drafter())
      decode_speculative(session, sampler, logits, out, session.config().decode, r);
    else
      decode_plain(session, sampler, logits, out);
  }
  out.finish();
  r.generate_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace kestrel
