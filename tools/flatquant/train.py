#!/usr/bin/env python3
"""FlatQuant's trainer (PAPERS.md card 5; issue 17): learns, layer by layer, the affine
transforms that make a llama/qwen2 model's W4A4 quantization flat, and writes them to a
small GGUF that `kestrel quantize --flatquant FILE` folds into the weights.

Per layer, each of the four projection inputs (attention input, attention output, MLP
input, down-projection input) gets x' = (x * s) (P1 ⊗ P2): a per-channel scale s and a
Kronecker product of two small invertible matrices (24 x 24 ⊗ 24 x 24 for 576 channels,
32 x 48 for 1536, 64 x 76 for 4864). The weights reading that input become
W' = (W / s) (P1 ⊗ P2)^-T, so x' W'^T = x W^T exactly; the runtime applies the transform to
each token (n (n1 + n2) multiply-adds) before quantizing the activation. Each weight row also
learns a clipping ratio (FlatQuant's learnable weight clipping). Training minimizes the mean
squared error between the layer's output in float and its output with both weights and
activations fake-quantized *as kestrel quantizes them* (weights: ggml's Q4_0 blocks of 32;
activations: act=a4's blocks of 32, scale amax / 7, codes -7..7), with straight-through
rounding; inputs and targets come from the float model (the source file, dequantized).

Why Python: FlatQuant is a gradient-descent method through attention, RoPE and SwiGLU;
writing those gradients in C++ would be a project of its own (issue 17 allows an offline
trainer). The runtime and the folding are C++ (model/flat_transform.h).

  train.py --model M.gguf --tokens ids.json --out M.flatquant.gguf [--epochs 12 --seq-len 512]

ids.json: a JSON list of token-id lists, e.g. from `kestrel calibrate text -m M.gguf --ids ids.json`
(the model's own generations; never the evaluation text).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "eagle3"))  # the GGUF reader and the float reference forward
import cpu_env  # noqa: E402,F401  (before torch)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gguf import GGUFWriter  # noqa: E402

from gguf_io import TargetModel  # noqa: E402
from reference_features import ReferenceModel  # noqa: E402

# The four transformed inputs and the matrices that read each.
SITES = {
    "attn_in": ("attn_q", "attn_k", "attn_v"),
    "attn_out": ("attn_output",),
    "ffn_in": ("ffn_gate", "ffn_up"),
    "ffn_down": ("ffn_down",),
}
QK = 32  # block of Q4_0 and of the activation formats


def kron_factors(n: int) -> tuple[int, int]:
    """n = n1 * n2 with n1 the largest divisor of n not above sqrt(n)."""
    n1 = math.isqrt(n)
    while n % n1:
        n1 -= 1
    return n1, n // n1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


def fake_q4_0(w: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """ggml's Q4_0 of each 32-block of w's rows ([out, in]), the block's signed largest value
    scaled by the row's clipping ratio: d = clip * max / -8, codes round(x / d) in -8..7."""
    out, n = w.shape
    b = w.reshape(out, n // QK, QK)
    m = torch.gather(b, -1, b.abs().argmax(-1, keepdim=True)) * clip[:, None, None]
    d = m / -8.0
    d = torch.where(d == 0, torch.ones_like(d), d)
    return (torch.clamp(round_ste(b / d), -8, 7) * d).reshape(out, n)


def fake_act(x: torch.Tensor, bits: int, ratio: torch.Tensor | float = 1.0) -> torch.Tensor:
    """kestrel's activation blocks of 32: scale amax / 7 with codes -7..7 (a4), or amax / 127 (a8);
    with a clipping ratio, the block first clamped to +-ratio * amax (what the runtime does
    before act=a4's quantizer, LlamaModel::flat_input)."""
    qmax = 7.0 if bits == 4 else 127.0
    shape = x.shape
    b = x.reshape(*shape[:-1], shape[-1] // QK, QK)
    d = ratio * b.abs().amax(-1, keepdim=True) / qmax
    d = torch.where(d == 0, torch.ones_like(d), d)
    return (torch.clamp(round_ste(b / d), -qmax, qmax) * d).reshape(shape)


class Transform(torch.nn.Module):
    """x -> (x * s) (P1 ⊗ P2); a row-major x of n = n1 n2 values is X [n1, n2] and the
    product is P1^T X P2. Starts at the identity (the plain round-to-nearest model)."""

    def __init__(self, n: int):
        super().__init__()
        self.n1, self.n2 = kron_factors(n)
        self.p1 = torch.nn.Parameter(torch.eye(self.n1))
        self.p2 = torch.nn.Parameter(torch.eye(self.n2))
        self.log_s = torch.nn.Parameter(torch.zeros(n))
        # Activation clipping ratio (sigmoid; starts at 0.99), applied with act=a4 only.
        self.act_logit = torch.nn.Parameter(torch.tensor(math.log(0.99 / 0.01)))

    def act_clip(self) -> torch.Tensor:
        return torch.sigmoid(self.act_logit)

    def smooth(self, x_max: torch.Tensor, w_max: torch.Tensor, alpha: float) -> None:
        """SmoothQuant's scales as the start of s (the card's alpha = 0.3): inputs divided by
        max|x|^alpha / max|w|^(1 - alpha), normalized to a geometric mean of 1."""
        with torch.no_grad():
            t = alpha * x_max.clamp_min(1e-5).log() - (1 - alpha) * w_max.clamp_min(1e-5).log()
            self.log_s.copy_(-(t - t.mean()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.log_s.exp()
        X = x.reshape(*x.shape[:-1], self.n1, self.n2)
        return (self.p1.T @ X @ self.p2).reshape(x.shape)

    def fold(self, w: torch.Tensor) -> torch.Tensor:
        """Rows of w ([out, n]) -> (w / s) (P1 ⊗ P2)^-T, i.e. P1^-1 W_r P2^-T per row."""
        w = w / self.log_s.exp()
        W = w.reshape(-1, self.n1, self.n2)
        return (torch.linalg.inv(self.p1) @ W @ torch.linalg.inv(self.p2).T).reshape(w.shape)


class LayerQuant(torch.nn.Module):
    """One layer's transforms and weight clipping ratios (sigmoid of a logit per row)."""

    def __init__(self, dims: dict[str, int], rows: dict[str, int], clip_init: float):
        super().__init__()
        self.tf = torch.nn.ModuleDict({s: Transform(dims[s]) for s in SITES})
        logit = math.log(clip_init / (1.0 - clip_init))
        self.clip = torch.nn.ParameterDict(
            {m: torch.nn.Parameter(torch.full((rows[m],), logit)) for ms in SITES.values() for m in ms})


class Layer:
    """A decoder layer of the reference model, in float or fake-quantized through a LayerQuant."""

    def __init__(self, ref: ReferenceModel, il: int, act_bits: int):
        self.ref, self.t, self.p, self.act_bits = ref, ref.t, f"blk.{il}.", act_bits
        self.w = {m: ref.w(self.p + m + ".weight") for ms in SITES.values() for m in ms}
        self.b = {m: ref.w(self.p + m + ".bias") for m in ("attn_q", "attn_k", "attn_v")}

    def dims(self) -> dict[str, int]:
        return {s: self.w[ms[0]].shape[1] for s, ms in SITES.items()}

    def rows(self) -> dict[str, int]:
        return {m: w.shape[0] for m, w in self.w.items()}

    def forward(self, x: torch.Tensor, lq: LayerQuant | None = None, stats: dict | None = None) -> torch.Tensor:
        """x [B, T, E] -> the layer's output [B, T, E] (residual included). `stats` (float
        forward): gets each site's largest input magnitude per channel."""
        t, p = self.t, self.p
        B, T, _ = x.shape

        def project(site: str, h: torch.Tensor) -> list[torch.Tensor]:
            if stats is not None:
                m = h.detach().abs().reshape(-1, h.shape[-1]).amax(0)
                stats[site] = m if site not in stats else torch.maximum(stats[site], m)
            if lq is None:
                hs, ws = h, [self.w[m] for m in SITES[site]]
            else:
                tf = lq.tf[site]
                hs = fake_act(tf(h), self.act_bits, tf.act_clip() if self.act_bits == 4 else 1.0)
                ws = [fake_q4_0(tf.fold(self.w[m]), torch.sigmoid(lq.clip[m])) for m in SITES[site]]
            out = [hs @ w.T for w in ws]
            return [y if self.b.get(m) is None else y + self.b[m] for y, m in zip(out, SITES[site])]

        h = self.ref.norm(x, p + "attn_norm.weight")
        q, k, v = project("attn_in", h)
        q = self.ref.rope(q.view(B, T, t.n_head, -1), T)
        k = self.ref.rope(k.view(B, T, t.n_head_kv, -1), T)
        v = v.view(B, T, t.n_head_kv, -1)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True, enable_gqa=True)
        x = x + project("attn_out", att.transpose(1, 2).reshape(B, T, -1))[0]
        h = self.ref.norm(x, p + "ffn_norm.weight")
        g, u = project("ffn_in", h)
        return x + project("ffn_down", F.silu(g) * u)[0]


def chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def layer_mse(layer: Layer, X: torch.Tensor, Y: torch.Tensor, lq: LayerQuant | None, batch: int) -> float:
    with torch.no_grad():
        return sum(F.mse_loss(layer.forward(X[s], lq), Y[s], reduction="sum").item()
                   for s in chunks(len(X), batch)) / Y.numel()


def train_layer(layer: Layer, X: torch.Tensor, Y: torch.Tensor, a, lr: float,
                x_max: dict) -> tuple[LayerQuant, float, float]:
    """Trains one layer's LayerQuant from SmoothQuant's scales (--smooth-alpha; x_max: the
    sites' largest inputs per channel); returns it at its best epoch by the error on all of X,
    the start and the identity (round-to-nearest) counting as epochs, with the identity's
    error and the best."""
    lq = LayerQuant(layer.dims(), layer.rows(), a.clip_init)
    before = layer_mse(layer, X, Y, lq, a.batch)
    best, best_state = before, copy.deepcopy(lq.state_dict())
    if a.smooth_alpha >= 0:
        for site, ms in SITES.items():
            w_max = torch.stack([layer.w[m].abs().amax(0) for m in ms]).amax(0)
            lq.tf[site].smooth(x_max[site], w_max, a.smooth_alpha)
        err = layer_mse(layer, X, Y, lq, a.batch)
        if err < best:
            best, best_state = err, copy.deepcopy(lq.state_dict())
    params = [{"params": [p for n, p in lq.named_parameters() if not n.startswith("clip")], "lr": lr},
              {"params": list(lq.clip.parameters()), "lr": a.clip_lr}]
    opt = torch.optim.AdamW(params, weight_decay=0.0)
    steps = a.epochs * math.ceil(len(X) / a.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(a.seed)
    for _ in range(a.epochs):
        order = torch.randperm(len(X), generator=gen)
        for s in chunks(len(X), a.batch):
            idx = order[s]
            loss = F.mse_loss(layer.forward(X[idx], lq), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        err = layer_mse(layer, X, Y, lq, a.batch)
        if err < best:
            best, best_state = err, copy.deepcopy(lq.state_dict())
    lq.load_state_dict(best_state)
    return lq, before, best


def write_transforms(path: str, target: TargetModel, layers: list[LayerQuant], a, note: str) -> None:
    tmp = path + ".tmp"
    w = GGUFWriter(tmp, "flatquant")
    w.add_string("kestrel.flatquant.model", os.path.basename(target.path))
    w.add_uint32("kestrel.flatquant.n_layer", target.n_layer)
    w.add_uint32("kestrel.flatquant.n_embd", target.n_embd)
    w.add_string("kestrel.flatquant.weight_type", "q4_0")
    w.add_uint32("kestrel.flatquant.act_bits", a.act_bits)
    w.add_string("kestrel.flatquant.train_note", note)
    for il, lq in enumerate(layers):
        with torch.no_grad():
            for site, tf in lq.tf.items():
                w.add_tensor(f"blk.{il}.flat_{site}.scale", tf.log_s.exp().numpy().astype(np.float32))
                w.add_tensor(f"blk.{il}.flat_{site}.p1", tf.p1.numpy().astype(np.float32))
                w.add_tensor(f"blk.{il}.flat_{site}.p2", tf.p2.numpy().astype(np.float32))
                if a.act_bits == 4:
                    w.add_tensor(f"blk.{il}.flat_{site}.act_clip", tf.act_clip().reshape(1).numpy().astype(np.float32))
            for m, c in lq.clip.items():
                w.add_tensor(f"blk.{il}.{m}.flat_clip", torch.sigmoid(c).numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="source GGUF (llama or qwen2), read in float")
    p.add_argument("--tokens", required=True, help="JSON list of token-id lists (calibration text)")
    p.add_argument("--out", required=True, help="the transforms GGUF to write")
    p.add_argument("--seq-len", type=int, default=512, help="calibration sequence length")
    p.add_argument("--max-seqs", type=int, default=8, help="calibration sequences at most")
    p.add_argument("--holdout", type=int, default=2, help="further sequences the error is also reported on")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=1, help="sequences per step")
    p.add_argument("--lr", type=float, default=3e-2, help="transforms' learning rate (AdamW, cosine)")
    p.add_argument("--clip-lr", type=float, default=5e-2, help="clipping logits' learning rate")
    p.add_argument("--retries", type=int, default=2,
                   help="a layer whose error fell less than 1.1x is trained again at a third of the rate, "
                        "up to this many times")
    p.add_argument("--clip-init", type=float, default=0.98, help="initial clipping ratio")
    p.add_argument("--act-bits", type=int, default=4, choices=(4, 8), help="activation bits trained for")
    p.add_argument("--inputs", choices=("fp", "quantized"), default="fp",
                   help="each layer's training inputs: the float model's, or those of the quantized layers "
                        "before it (targets are always the float model's outputs)")
    p.add_argument("--smooth-alpha", type=float, default=-1.0,
                   help="start s from SmoothQuant's scales with this alpha (the card says 0.3; negative, the default: from 1)")
    p.add_argument("--layers", type=int, default=0, help="train only the first N layers (tests); 0: all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    target = TargetModel(a.model)
    ref = ReferenceModel(target)
    with open(a.tokens) as f:
        seqs = json.load(f)
    if seqs and isinstance(seqs[0], int):
        seqs = [seqs]
    pieces = [s[i:i + a.seq_len] for s in seqs for i in range(0, len(s) - a.seq_len + 1, a.seq_len)]
    held = pieces[a.max_seqs:a.max_seqs + a.holdout]
    pieces = pieces[:a.max_seqs]
    if len(pieces) < 2:
        raise SystemExit(f"{a.tokens}: {sum(map(len, seqs))} tokens give {len(pieces)} sequences of "
                         f"{a.seq_len}; at least 2 are needed (a longer calibration text or a smaller --seq-len)")
    n_layer = a.layers or target.n_layer
    print(f"flatquant: {os.path.basename(a.model)} ({target.arch}, {target.n_layer} layers, n_embd "
          f"{target.n_embd}); {len(pieces)} sequences of {a.seq_len} tokens ({len(held)} more held out); "
          f"{a.epochs} epochs per layer; "
          f"W4 (q4_0) A{a.act_bits}", file=sys.stderr)
    with torch.no_grad():
        X = ref.w("token_embd.weight")[torch.tensor(pieces)]  # [N, T, E]: the first layer's input
        Xh = ref.w("token_embd.weight")[torch.tensor(held)] if held else None
    # --inputs quantized: each layer learns from the inputs the quantized layers before it
    # give (their accumulated error included), against the float model's outputs.
    Xq, Xhq = X, Xh
    trained, t0, notes = [], time.time(), []
    for il in range(n_layer):
        t1 = time.time()
        layer = Layer(ref, il, a.act_bits)
        if any(n % QK for n in layer.dims().values()):
            raise SystemExit(f"layer {il}: input widths {layer.dims()} are not multiples of {QK}")
        with torch.no_grad():
            x_max: dict = {}
            Y = torch.cat([layer.forward(X[s], stats=x_max) for s in chunks(len(X), a.batch)])
            Yh = torch.cat([layer.forward(Xh[s]) for s in chunks(len(Xh), a.batch)]) if held else None
        # A layer whose error barely moved diverged (Qwen2.5's layer 3, which makes the
        # residual stream's massive activations, at lr 3e-2): again at a third of the rate.
        lr = a.lr
        lq, before, after = train_layer(layer, Xq, Y, a, lr, x_max)
        for _ in range(a.retries):
            if before / after >= 1.1:
                break
            lr /= 3
            print(f"flatquant: layer {il + 1}: {before / after:.2f}x at lr {lr * 3:.0e}; again at {lr:.0e}",
                  file=sys.stderr)
            retry = train_layer(layer, Xq, Y, a, lr, x_max)
            if retry[2] < after:
                lq, after = retry[0], retry[2]
        trained.append(lq)
        heldout = ""
        if held:
            rtn = layer_mse(layer, Xhq, Yh, LayerQuant(layer.dims(), layer.rows(), a.clip_init), a.batch)
            fq = layer_mse(layer, Xhq, Yh, lq, a.batch)
            heldout = f"; held out {rtn:.3e} -> {fq:.3e} ({rtn / fq:.2f}x)"
            notes.append(f"{rtn / fq:.2f}")
        else:
            notes.append(f"{before / after:.2f}")
        shapes = " ".join(f"{s} {tf.n1}x{tf.n2}" for s, tf in lq.tf.items()) if il == 0 else ""
        print(f"flatquant: layer {il + 1}/{n_layer}: output MSE {before:.3e} (identity transforms) -> {after:.3e} "
              f"({before / after:.2f}x lower){heldout}, {time.time() - t1:.0f} s {shapes}", file=sys.stderr)
        if a.inputs == "quantized":
            with torch.no_grad():
                Xq = torch.cat([layer.forward(Xq[s], lq) for s in chunks(len(Xq), a.batch)])
                Xhq = torch.cat([layer.forward(Xhq[s], lq) for s in chunks(len(Xhq), a.batch)]) if held else None
        X, Xh = Y, Yh  # the float model's next inputs
        if a.inputs == "fp":
            Xq, Xhq = X, Xh
    note = (f"{len(pieces)}x{a.seq_len} tokens, {a.epochs} epochs, lr {a.lr}, W4A{a.act_bits}; "
            f"{'held-out ' if held else ''}MSE ratio to round-to-nearest per layer {' '.join(notes)}")
    write_transforms(a.out, target, trained, a, note)
    print(f"flatquant: wrote {a.out} ({n_layer} layers, {time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
