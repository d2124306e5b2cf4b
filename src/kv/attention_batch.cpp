#include "kv/attention_batch.h"

#include <algorithm>
#include <vector>

#include "kernels/attention_set.h"
#include "kernels/attention_tiled.h"
#include "kv/kv_compress.h"

namespace kestrel {
namespace {

// One tiled task: up to kMaxTileRows (token, head) rows of one sequence and kv
// head. A token whose window does not start at 0 gets tasks of its own (its
// heads only), over the rows [first, pos] (kv/attention.h window_rows).
struct TileTask {
  int seq;
  int kv_head;
  std::vector<std::pair<int64_t, int>> rows;  // (token, query head)
  int64_t first = 0;                         // > 0: the window's first position
};

std::vector<TileTask> tile_tasks(const AttentionParams& p, const AttentionBatch& b) {
  const int group = p.n_head / p.n_kv_head;
  std::vector<int32_t> seqs(b.seq, b.seq + b.n_tokens);
  std::sort(seqs.begin(), seqs.end());
  seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
  std::vector<TileTask> tasks;
  for (int32_t s : seqs)
    for (int kvh = 0; kvh < p.n_kv_head; ++kvh) {
      TileTask task{s, kvh, {}};
      for (int64_t t = 0; t < b.n_tokens; ++t) {
        if (b.seq[t] != s) continue;
        if (const int64_t first = window_first(p, b.pos[t]); first > 0) {
          TileTask own{s, kvh, {}, first};
          for (int g = 0; g < group; ++g) {
            own.rows.emplace_back(t, kvh * group + g);
            if (static_cast<int>(own.rows.size()) == kernels::kMaxTileRows) {
              tasks.push_back(own);
              own.rows.clear();
            }
          }
          if (!own.rows.empty()) tasks.push_back(std::move(own));
          continue;
        }
        for (int g = 0; g < group; ++g) {
          task.rows.emplace_back(t, kvh * group + g);
          if (static_cast<int>(task.rows.size()) == kernels::kMaxTileRows) {
            tasks.push_back(task);
            task.rows.clear();
          }
        }
      }
      if (!task.rows.empty()) tasks.push_back(std::move(task));
    }
  return tasks;
}

void run_tile(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b, const TileTask& task,
              const kernels::AttentionKernelSet& attn) {
  thread_local std::vector<float> scratch;
  scratch.resize(kernels::tile_scratch_floats(p.head_dim));
  const int64_t q_dim = int64_t{p.n_head} * p.head_dim;
  const float* q[kernels::kMaxTileRows];
  float* out[kernels::kMaxTileRows];
  int64_t vis[kernels::kMaxTileRows];
  const int n = static_cast<int>(task.rows.size());
  const KvHeadView view = cache.view(layer, task.seq, task.kv_head);
  // Evicted rows (kvcompress) all lie before the batch's tokens.
  for (int i = 0; i < n; ++i) {
    const auto [t, h] = task.rows[i];
    q[i] = b.q + t * q_dim + int64_t{h} * p.head_dim;
    out[i] = b.out + t * q_dim + int64_t{h} * p.head_dim;
    vis[i] = int64_t{b.pos[t]} + 1 - task.first - view.evicted;
  }
  const kernels::TileRows rows{q, out, vis, n};
  if (task.first == 0) {
    attn.tile(head_rows(view), p.head_dim, rows, p.scale, scratch.data());
    return;
  }
  thread_local std::vector<int32_t> ids;
  attn.tile(window_rows(cache, view, task.first, vis[0], ids), p.head_dim, rows, p.scale, scratch.data());
}

// Decode through a group kernel: one task per (token, KV head, part of its
// query heads), so each task streams its KV head's cache once for all its
// heads. Groups are split only while there are fewer tasks than threads: the
// kernel prepares each KV block (keys transposed, values widened) once per
// task, which costs more than scoring a head, so a split group pays it twice.
// SmolLM2 (3 KV heads of 3 query heads, 2 threads), q8_0 decode at depth
// 8192 on a Sapphire Rapids-class VM: whole groups, 3 tasks on 2 threads,
// 22.43-23.53 t/s against 21.11-21.72 with the groups halved to 6 tasks
// (alternated; int8 28.82 vs 28.25, depth 2048 73.6 vs 71.1).
void attend_groups(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b,
                   ThreadPool& pool, const kernels::AttentionKernelSet& attn) {
  const int group = p.n_head / p.n_kv_head;
  const int64_t q_dim = int64_t{p.n_head} * p.head_dim;
  const int64_t threads = pool.size();
  auto n_tasks = [&](int sub) { return b.n_tokens * p.n_kv_head * ((group + sub - 1) / sub); };
  int sub = std::min(group, kernels::kMaxGroup);
  while (sub > 1 && n_tasks(sub) < threads) sub = (sub + 1) / 2;
  const int parts = (group + sub - 1) / sub;
  pool.parallel_for_dynamic(n_tasks(sub), 1, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / (int64_t{p.n_kv_head} * parts);
      const int kv_head = static_cast<int>(i / parts % p.n_kv_head);
      const int h0 = kv_head * group + static_cast<int>(i % parts) * sub;
      const int nq = std::min(sub, kv_head * group + group - h0);
      const int64_t n_visible = int64_t{b.pos[t]} + 1;
      const float* q[kernels::kMaxGroup];
      float* out[kernels::kMaxGroup];
      for (int j = 0; j < nq; ++j) {
        q[j] = b.q + t * q_dim + int64_t{h0 + j} * p.head_dim;
        out[j] = b.out + t * q_dim + int64_t{h0 + j} * p.head_dim;
      }
      if (window_first(p, n_visible - 1) > 0) {  // a window: the row kernels over a windowed view
        for (int j = 0; j < nq; ++j) attend_head(cache, layer, b.seq[t], p, h0 + j, q[j], n_visible, out[j], attn);
        continue;
      }
      const KvHeadView view = cache.view(layer, b.seq[t], kv_head);
      attn.group(head_rows(view), n_visible - view.evicted, p.head_dim, q, nq, p.scale, out);
    }
  });
}

}  // namespace

void attend_batch(const KvCache& cache, int layer, const AttentionParams& p, const AttentionBatch& b, ThreadPool& pool,
                  const kernels::AttentionKernelSet& attn, AttentionObserver* observer) {
  if (observer) observer->observe(cache, layer, p, b, pool);
  const int64_t q_dim = int64_t{p.n_head} * p.head_dim;
  if (b.n_tokens >= kernels::kMinTiledTokens) {
    const std::vector<TileTask> tasks = tile_tasks(p, b);
    pool.parallel_for_dynamic(static_cast<int64_t>(tasks.size()), 1, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) run_tile(cache, layer, p, b, tasks[i], attn);
    });
    return;
  }
  if (attn.group) {
    attend_groups(cache, layer, p, b, pool, attn);
    return;
  }
  // One task per (token, head): each reads its sequence's cache up to its position.
  pool.parallel_for_dynamic(b.n_tokens * p.n_head, 4, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / p.n_head;
      const int h = static_cast<int>(i % p.n_head);
      attend_head(cache, layer, b.seq[t], p, h, b.q + t * q_dim + int64_t{h} * p.head_dim, int64_t{b.pos[t]} + 1,
                  b.out + t * q_dim + int64_t{h} * p.head_dim, attn);
    }
  });
}

}  // namespace kestrel
