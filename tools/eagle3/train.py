#!/usr/bin/env python3
"""Trains an EAGLE-3 draft head for a target GGUF from the hidden-state features kestrel
dumps, and writes it as a GGUF that llama.cpp's `eagle3` architecture (and kestrel) load.

  train.py --data DIR [--data DIR2 ...] --out head.gguf [--minutes 60] [--target T.gguf]

See README.md beside this file for the data format, the head and the training-time test.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_env  # noqa: E402  (before torch: OpenMP reads its settings when torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import dataset as dsm  # noqa: E402
from gguf_io import TENSOR_NAMES, TargetModel, write_head  # noqa: E402
from head import Eagle3Head, HeadConfig  # noqa: E402

IGNORE = -100


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, help="feature dataset dir (repeatable)")
    p.add_argument("--out", required=True, help="head GGUF to write (the best head by validation)")
    p.add_argument("--out-last", help="also write the last head here")
    p.add_argument("--target", help="target GGUF (default: meta.json's target)")
    p.add_argument("--ckpt", help="training checkpoint (.pt; default: OUT with .pt)")
    p.add_argument("--resume", help="continue from this checkpoint (.pt)")
    p.add_argument("--minutes", type=float, default=None,
                   help="training wall-time budget, total across resumes (default 60 unless --steps)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many optimizer steps (total)")
    p.add_argument("--seq-len", type=int, default=512, help="window length (random crops)")
    p.add_argument("--batch", type=int, default=4, help="windows per optimizer step")
    p.add_argument("--ttt-steps", type=int, default=4, help="unrolled draft steps (training-time test)")
    p.add_argument("--step-decay", type=float, default=0.8, help="loss weight of step j is decay^j")
    p.add_argument("--draft-vocab", type=int, default=16384)
    p.add_argument("--ffn", type=int, default=2432)
    p.add_argument("--heads", type=int, default=14)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine floor as a fraction of --lr")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16",
                   help="bf16 = CPU autocast of the matmuls (weights and optimizer stay fp32)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.03)
    p.add_argument("--val-windows", type=int, default=24, help="validation windows (evenly spaced)")
    p.add_argument("--eval-minutes", type=float, default=10.0, help="validate this often")
    p.add_argument("--log-seconds", type=float, default=30.0)
    p.add_argument("--init-output", choices=["target", "random"], default="target",
                   help="start output.weight/output_norm from the target's LM head rows of the draft tokens")
    p.add_argument("--output-norm-scale", type=float, default=0.2,
                   help="with --init-output target: output_norm starts at this times the target's")
    p.add_argument("--type", dest="matrix_type", choices=["f16", "q8_0", "f32"], default="f16",
                   help="GGUF type of the head's matrices (norms are always F32)")
    a = p.parse_args(argv)
    if a.minutes is None and a.steps is None:
        a.minutes = 60.0
    if a.ckpt is None:
        a.ckpt = os.path.splitext(a.out)[0] + ".pt"
    return a


# --- setup ---------------------------------------------------------------------------------

def open_datasets(paths):
    datasets = [dsm.FeatureDataset(p) for p in paths]
    first = datasets[0]
    for d in datasets[1:]:
        if (d.n_embd, d.layers, d.n_vocab) != (first.n_embd, first.layers, first.n_vocab):
            raise SystemExit(f"{d.path}: n_embd/layers/n_vocab differ from {first.path}")
    return datasets


def build_config(args, target: TargetModel, ds: dsm.FeatureDataset, n_draft_vocab: int) -> HeadConfig:
    if ds.n_embd != target.n_embd:
        raise SystemExit(f"features have n_embd {ds.n_embd}, target {target.path} has {target.n_embd}")
    if ds.n_vocab != target.n_vocab:
        log(f"warning: meta n_vocab {ds.n_vocab} != target token_embd rows {target.n_vocab}; using the target's")
    return HeadConfig(n_embd=target.n_embd, target_n_embd=ds.n_embd, target_layers=list(ds.layers),
                      n_vocab=target.n_vocab, n_draft_vocab=n_draft_vocab, n_head=args.heads,
                      n_head_kv=args.kv_heads, head_dim=args.head_dim, n_ff=args.ffn,
                      rope_base=target.rope_base, rms_eps=1e-6)


def init_output_from_target(model: Eagle3Head, target: TargetModel, d2t: np.ndarray, norm_scale: float) -> str:
    """The target's LM head rows of the draft tokens, and its output_norm times norm_scale: the
    head predicts the target's own tokens, so the target's output space beats noise. At full
    scale the untrained head is confidently wrong (loss ~12 > ln K) and catches up only after
    ~50 steps; at 0.2 it leads from the start (SmolLM2 features, 80 steps: val acc0 0.27 and
    loss 4.22, vs 0.28 / 4.41 at scale 1 and 0.22 / 4.62 from a random output.weight)."""
    rows = target.rows(target.output_name(), d2t)
    norm = target.vector("output_norm.weight")
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.from_numpy(rows))
        if norm is not None and len(norm) == model.cfg.n_embd:
            model.output_norm.copy_(torch.from_numpy(norm.astype(np.float32)) * norm_scale)
    return f"output.weight from target {target.output_name()} rows, output_norm = {norm_scale:g} x target's"


def head_weights(model: Eagle3Head) -> dict[str, np.ndarray]:
    out = {}
    for attr in TENSOR_NAMES:
        obj = getattr(model, attr)
        t = obj.weight if isinstance(obj, torch.nn.Linear) else obj
        out[attr] = t.detach().float().cpu().numpy()
    return out


def make_optimizer(model, args):
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]  # norms: no weight decay
    groups = [{"params": matrices, "weight_decay": args.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(args, step: int, progress: float) -> float:
    """Linear warmup over --warmup steps, then cosine from --lr down to min_lr_ratio*lr over the
    budget. progress in [0, 1] = elapsed/minutes (or step/steps): the schedule follows wall
    time because the run is budgeted by wall time."""
    warm = min(1.0, (step + 1) / max(1, args.warmup))
    cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * warm * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cos)


def autocast(dtype: str):
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- one batch -----------------------------------------------------------------------------

class Batch:
    """A collated batch as torch tensors, with the per-step views the TTT forward needs."""

    def __init__(self, windows, n_steps: int, embed: torch.Tensor, t2d: torch.Tensor):
        feats, tokens, labels, valid = dsm.collate(windows, n_steps)
        self.length = feats.shape[1]
        self.n_steps = n_steps
        self.features = torch.from_numpy(feats)
        self.tokens = torch.from_numpy(tokens)
        self.labels_target = torch.from_numpy(labels)
        self.valid = torch.from_numpy(valid)
        self.labels_draft = t2d[self.labels_target]  # -1 outside the draft vocabulary
        self.embed = embed

    def step_slice(self, j: int) -> slice:
        return slice(j, j + self.length)

    def step_embds(self) -> list[torch.Tensor]:
        return [self.embed[self.tokens[:, self.step_slice(j)]] for j in range(self.n_steps)]

    def step_targets(self, j: int) -> torch.Tensor:
        """Draft-vocab class of every step-j state; IGNORE where invalid or not in the draft vocab."""
        s = self.step_slice(j)
        lab = self.labels_draft[:, s]
        return torch.where(self.valid[:, s] & (lab >= 0), lab, torch.full_like(lab, IGNORE))

    def n_anchors(self) -> int:
        return int(self.valid[:, : self.length].sum())


def forward_losses(model, batch: Batch, dtype: str, metric_steps: int | None = None):
    """Per step: (summed CE, n labelled, correct mask or None, n valid). The top-1 check is
    done for the first metric_steps steps only (default all): a pass over [tokens, K] each."""
    with autocast(dtype):
        logits = model.ttt_forward(batch.features, batch.step_embds())
    out = []
    for j, lg in enumerate(logits):
        tgt = batch.step_targets(j)
        lg = lg.float().reshape(-1, lg.shape[-1])
        ce = F.cross_entropy(lg, tgt.reshape(-1), ignore_index=IGNORE, reduction="sum")
        correct = None
        if metric_steps is None or j < metric_steps:
            with torch.no_grad():  # max().indices: faster than argmax on CPU
                correct = (lg.max(-1).indices.view_as(tgt) == tgt) & (tgt != IGNORE)
        n_valid = int(batch.valid[:, batch.step_slice(j)].sum())
        out.append((ce, int((tgt != IGNORE).sum()), correct, n_valid))
    return out


def weighted_loss(per_step, decay: float) -> torch.Tensor:
    """sum_j decay^j * mean CE_j / sum_j decay^j: later steps matter (drafts chain through
    them) but less, since they only count once the earlier ones were accepted."""
    total, wsum = 0.0, 0.0
    for j, (ce, n, _, _) in enumerate(per_step):
        w = decay ** j
        wsum += w
        if n > 0:
            total = total + w * ce / n
    return total / wsum


# --- validation ----------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, windows, args, embed, t2d) -> dict:
    """Teacher-forced TTT metrics on the validation windows: per-step top-1 accuracy (a label
    outside the draft vocabulary counts as a miss), and two estimates of the accepted length
    per draft of ttt_steps tokens:
      tau_prod = sum_j prod_{i<=j} acc_i           (assumes independent steps)
      tau_run  = mean over anchors of the number of leading correct steps
    Inference feeds step j the draft's own token j-1, which equals the teacher-forced one while
    the draft is right, so on text the target generated greedily (tokens[i+1] == argmax[i])
    tau_run is what greedy verification accepts per draft (up to the window's cut context);
    on other text both are approximations."""
    model.eval()
    k = args.ttt_steps
    ce_sum, n_lab = np.zeros(k), np.zeros(k)
    n_correct, n_valid = np.zeros(k), np.zeros(k)
    run_sum, n_anchor = 0.0, 0
    for i in range(0, len(windows), args.batch):
        b = Batch(windows[i:i + args.batch], k, embed, t2d)
        per_step = forward_losses(model, b, args.dtype)
        alive = b.valid[:, : b.length].clone()
        n_anchor += int(alive.sum())
        for j, (ce, n, correct, nv) in enumerate(per_step):
            ce_sum[j] += float(ce)
            n_lab[j] += n
            n_correct[j] += int(correct.sum())
            n_valid[j] += nv
            alive &= correct
            run_sum += int(alive.sum())
    model.train()
    acc = n_correct / np.maximum(n_valid, 1)
    return {"acc": acc.tolist(), "loss": (ce_sum / np.maximum(n_lab, 1)).tolist(),
            "tau_prod": float(np.cumprod(acc).sum()), "tau_run": run_sum / max(n_anchor, 1),
            "anchors": n_anchor, "in_vocab": float(n_lab[0] / max(n_valid[0], 1))}


def format_eval(m: dict) -> str:
    acc = " ".join(f"{a:.3f}" for a in m["acc"])
    return (f"val acc/step [{acc}] tau_prod {m['tau_prod']:.3f} tau_run {m['tau_run']:.3f} "
            f"loss0 {m['loss'][0]:.3f} ({m['anchors']} anchors, {100 * m['in_vocab']:.1f}% labels in draft vocab)")


# --- training run ----------------------------------------------------------------------------

class Trainer:
    """One run: data, target, head, optimizer, budget, best head so far."""

    def __init__(self, args):
        self.args = args
        t_start = time.time()
        self.datasets = open_datasets(args.data)
        self.target = TargetModel(args.target or self.datasets[0].meta["target"])
        seqs = dsm.list_sequences(self.datasets)
        self.train_seqs, val_seqs = dsm.split_sequences(seqs, args.val_fraction, args.seed)
        if len(self.train_seqs) == 0:
            raise SystemExit("no training sequence of 2+ rows")
        self.n_train_rows = int((self.train_seqs[:, 2] - self.train_seqs[:, 1]).sum())
        log(f"data: {sum(d.n_rows for d in self.datasets)} rows, {len(seqs)} sequences "
            f"({len(self.train_seqs)} train / {len(val_seqs)} val), layers {self.datasets[0].layers}")

        ckpt = torch.load(args.resume, map_location="cpu", weights_only=False) if args.resume else None
        self.cfg, self.d2t = self.draft_vocab_and_config(ckpt)
        self.t2d = torch.from_numpy(dsm.target_to_draft(self.d2t, self.cfg.n_vocab))
        # The target's token embedding: frozen, fp32 like llama.cpp's get_rows output.
        self.embed = torch.from_numpy(self.target.rows("token_embd.weight"))

        self.model = Eagle3Head(self.cfg)
        init_note = "random init"
        if ckpt is None and args.init_output == "target":
            init_note = init_output_from_target(self.model, self.target, self.d2t, args.output_norm_scale)
        self.opt = make_optimizer(self.model, args)
        self.step, self.elapsed_before, self.best, self.best_state = 0, 0.0, None, None
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optim"])
            self.step, self.elapsed_before = ckpt["step"], ckpt["elapsed"]
            self.best, self.best_state = ckpt.get("best"), ckpt.get("best_state")
            init_note = f"resumed from {args.resume} at step {self.step}"
        c = self.cfg
        n_params = sum(p.numel() for p in self.model.parameters())
        log(f"head: {n_params / 1e6:.1f}M params, E={c.n_embd} heads={c.n_head}/{c.n_head_kv}x{c.head_dim} "
            f"ffn={c.n_ff} K={c.n_draft_vocab}, rope base {c.rope_base:g}; {init_note}; "
            f"dtype {args.dtype}, {args.threads} threads; setup {time.time() - t_start:.1f}s")

        self.val_windows = dsm.validation_windows(self.datasets, val_seqs, args.seq_len, args.ttt_steps,
                                                  args.val_windows)
        self.rng = np.random.default_rng(args.seed + 1000003 * self.step)  # a resumed run draws new windows
        self.budget_s = args.minutes * 60.0 if args.minutes is not None else None
        self.t0 = time.time()

    def draft_vocab_and_config(self, ckpt):
        if ckpt is not None:
            return HeadConfig(**ckpt["cfg"]), np.asarray(ckpt["d2t"], np.int64)
        labels, tokens = dsm.count_labels_and_tokens(self.datasets, self.train_seqs, self.target.n_vocab)
        d2t = dsm.build_draft_vocab(labels, tokens, self.args.draft_vocab)
        covered = labels[d2t].sum() / max(1, labels.sum())
        log(f"draft vocab: {len(d2t)} tokens cover {100 * covered:.2f}% of the training labels")
        return build_config(self.args, self.target, self.datasets[0], len(d2t)), d2t

    # --- budget ---

    def elapsed(self) -> float:
        """Training seconds, including those of the runs this one resumes."""
        return self.elapsed_before + (time.time() - self.t0)

    def progress(self) -> float:
        parts = []
        if self.budget_s:
            parts.append(self.elapsed() / self.budget_s)
        if self.args.steps:
            parts.append(self.step / self.args.steps)
        return max(parts) if parts else 0.0

    def finished(self) -> bool:
        a = self.args
        return ((self.budget_s is not None and self.elapsed() >= self.budget_s)
                or (a.steps is not None and self.step >= a.steps))

    # --- steps ---

    def train_step(self):
        a = self.args
        lr = lr_at(a, self.step, self.progress())
        for g in self.opt.param_groups:
            g["lr"] = lr
        windows = dsm.sample_train_windows(self.rng, self.datasets, self.train_seqs, a.batch, a.seq_len, a.ttt_steps)
        batch = Batch(windows, a.ttt_steps, self.embed, self.t2d)
        per_step = forward_losses(self.model, batch, a.dtype, metric_steps=1)
        loss = weighted_loss(per_step, a.step_decay)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.clip)
        self.opt.step()
        self.step += 1
        acc0 = int(per_step[0][2].sum()) / max(1, per_step[0][3])
        return loss.item(), acc0, batch.n_anchors(), lr

    def validate(self) -> dict | None:
        """Validates; keeps a copy of the weights when they beat the best so far."""
        if not self.val_windows:
            return None
        t = time.time()
        m = evaluate(self.model, self.val_windows, self.args, self.embed, self.t2d)
        m["step"] = self.step
        improved = self.best is None or m["tau_prod"] >= self.best["tau_prod"]  # ties: the later one
        log(f"step {self.step} {format_eval(m)} [{time.time() - t:.0f}s]{' *best*' if improved else ''}")
        if improved:
            self.best, self.best_state = m, copy.deepcopy(self.model.state_dict())
        return m

    # --- outputs ---

    def note(self, metrics) -> str:
        acc = ",".join(f"{x:.3f}" for x in metrics["acc"]) if metrics else "n/a"
        tau = f"{metrics['tau_prod']:.2f}" if metrics else "n/a"
        step = metrics["step"] if metrics else self.step
        return (f"train rows {self.n_train_rows}, step {step} of {self.step}, {self.elapsed() / 60:.1f} min, "
                f"ttt {self.args.ttt_steps}, val acc/step [{acc}], tau {tau}")

    def write(self, path: str, state_dict, metrics) -> None:
        m = Eagle3Head(self.cfg)
        m.load_state_dict(state_dict)
        write_head(path, head_weights(m), self.cfg, self.d2t, self.target, self.args.matrix_type, self.note(metrics))

    def save_checkpoint(self) -> None:
        path = self.args.ckpt
        tmp = path + ".tmp"
        torch.save({"model": self.model.state_dict(), "optim": self.opt.state_dict(), "cfg": self.cfg.to_dict(),
                    "d2t": self.d2t, "step": self.step, "elapsed": self.elapsed(), "best": self.best,
                    "best_state": self.best_state, "args": vars(self.args)}, tmp)
        os.replace(tmp, path)

    def run(self) -> None:
        a = self.args
        last_log = last_eval = time.time()
        sums = [0.0, 0.0, 0, 0]  # loss, acc0, anchors, steps since the last log line
        self.model.train()
        while not self.finished():
            loss, acc0, anchors, lr = self.train_step()
            sums = [sums[0] + loss, sums[1] + acc0, sums[2] + anchors, sums[3] + 1]
            now = time.time()
            if now - last_log >= a.log_seconds:
                log(f"step {self.step} {self.elapsed() / 60:.1f}min {sums[2] / (now - last_log):.0f} tok/s "
                    f"loss {sums[0] / sums[3]:.3f} acc0 {sums[1] / sums[3]:.3f} lr {lr:.2e}")
                last_log, sums = now, [0.0, 0.0, 0, 0]
            if now - last_eval >= a.eval_minutes * 60.0:
                m = self.validate()
                if m is not None and self.best is m:
                    self.write(a.out, self.best_state, self.best)
                self.save_checkpoint()
                last_eval = time.time()

        last = self.validate()
        if self.best_state is None:  # no validation data: the last head is all we know
            self.best_state = copy.deepcopy(self.model.state_dict())
        self.save_checkpoint()
        self.write(a.out, self.best_state, self.best)
        log(f"wrote {a.out} ({'head of step ' + str(self.best['step']) if self.best else 'last head'}) "
            f"and {a.ckpt}")
        if a.out_last:
            self.write(a.out_last, self.model.state_dict(), last)
            log(f"wrote {a.out_last} (last head, step {self.step})")
        log(f"done: {self.step} steps, {self.elapsed() / 60:.2f} min of training")


def main(argv=None) -> int:
    args = parse_args(argv)
    cpu_env.keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    Trainer(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
