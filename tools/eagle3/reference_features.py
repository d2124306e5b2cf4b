#!/usr/bin/env python3
"""A slow, plain torch forward of a small llama/qwen2 target GGUF that writes the same
feature dataset as `kestrel dump-features` (see dataset.py): the residual stream at the
input of 3 layers and the target's argmax after every position.

It exists to check the trainer end to end without kestrel (train a head on its output,
run the head in llama.cpp, see drafts accepted), and to cross-check kestrel's dump: both
should agree up to fp16/quantization noise. Not for producing real training sets: it
recomputes every window from scratch, in fp32, on the CPU.

  reference_features.py --target T.gguf --tokens ids.json --layers 2,12,21 OUT_DIR

ids.json: a JSON list of token-id lists (one per sequence), e.g. from
`llama-tokenize -m T.gguf -f text.txt --ids`. Sequences longer than --ctx are cut into
independent sequences of --ctx tokens.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_env  # noqa: E402,F401  (before torch: OpenMP reads its settings when torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dataset import write_dataset  # noqa: E402
from gguf_io import TargetModel  # noqa: E402

# How each architecture rotates q/k in llama.cpp: llama GGUFs carry Wq/Wk permuted for
# GGML's "normal" (adjacent-pair) RoPE; qwen2 GGUFs keep HF's layout and use "neox" (halves).
ROPE_MODE = {"llama": "normal", "qwen2": "neox"}


class ReferenceModel:
    def __init__(self, target: TargetModel):
        if target.arch not in ROPE_MODE:
            raise SystemExit(f"reference forward knows {sorted(ROPE_MODE)}, not {target.arch}")
        self.t = target
        self.rope_mode = ROPE_MODE[target.arch]
        self.head_dim = target.n_embd // target.n_head
        self.cache: dict[str, torch.Tensor] = {}

    def w(self, name: str) -> torch.Tensor | None:
        """Dequantized tensor as torch fp32, numpy/torch layout ([out, in] for matrices)."""
        if name not in self.cache:
            t = self.t.tensors.get(name)
            if t is None:
                return None
            rows = int(t.shape[1]) if len(t.shape) > 1 else 1
            self.cache[name] = torch.from_numpy(self.t.rows(name) if rows > 1 else self.t.vector(name).copy())
        return self.cache[name]

    def linear(self, x, name):
        y = x @ self.w(name + ".weight").T
        b = self.w(name + ".bias")
        return y if b is None else y + b

    def norm(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.t.rms_eps) * self.w(name)

    def rope(self, x, n):  # x [T, H, hd]
        hd = x.shape[-1]
        inv = self.t.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cos(ang).float()[:, None, :], torch.sin(ang).float()[:, None, :]
        if self.rope_mode == "normal":
            x0, x1 = x[..., 0::2], x[..., 1::2]
            return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)
        x0, x1 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1)

    @torch.no_grad()
    def forward(self, tokens: list[int], layers: list[int]):
        """-> (features [T, 3E] fp32: inputs of `layers`; argmax [T]; mean next-token CE)."""
        t = self.t
        n = len(tokens)
        x = self.w("token_embd.weight")[torch.tensor(tokens)]
        taps = {}
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        for il in range(t.n_layer):
            if il in layers:
                taps[il] = x.clone()
            p = f"blk.{il}."
            h = self.norm(x, p + "attn_norm.weight")
            q = self.rope(self.linear(h, p + "attn_q").view(n, t.n_head, -1), n)
            k = self.rope(self.linear(h, p + "attn_k").view(n, t.n_head_kv, -1), n)
            v = self.linear(h, p + "attn_v").view(n, t.n_head_kv, -1)
            att = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                                 attn_mask=mask, enable_gqa=True)
            x = x + self.linear(att.transpose(0, 1).reshape(n, -1), p + "attn_output")
            h = self.norm(x, p + "ffn_norm.weight")
            x = x + self.linear(F.silu(self.linear(h, p + "ffn_gate")) * self.linear(h, p + "ffn_up"), p + "ffn_down")
        if t.n_layer in layers:  # "input of layer n_layer" = after the last layer
            taps[t.n_layer] = x.clone()
        logits = self.norm(x, "output_norm.weight") @ self.w(t.output_name()).T
        ce = F.cross_entropy(logits[:-1], torch.tensor(tokens[1:])).item() if n > 1 else float("nan")
        return torch.cat([taps[l] for l in layers], -1), logits.argmax(-1), ce


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--target", required=True)
    p.add_argument("--tokens", required=True, help="JSON list of token-id lists")
    p.add_argument("--layers", required=True, help="three layer indices, e.g. 2,12,21")
    p.add_argument("--ctx", type=int, default=512, help="longest sequence; longer ones are cut")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    layers = [int(x) for x in a.layers.split(",")]
    target = TargetModel(a.target)
    model = ReferenceModel(target)
    with open(a.tokens) as f:
        seqs = json.load(f)
    if seqs and isinstance(seqs[0], int):
        seqs = [seqs]
    pieces = [s[i:i + a.ctx] for s in seqs for i in range(0, len(s), a.ctx)]
    pieces = [s for s in pieces if len(s) >= 2]
    feats, argmax, tokens, starts, ces = [], [], [], [0], []
    t0 = time.time()
    for s in pieces:
        f, am, ce = model.forward(s, layers)
        feats.append(f.numpy().astype(np.float16))
        argmax.append(am.numpy())
        tokens.append(np.asarray(s))
        starts.append(starts[-1] + len(s))
        ces.append(ce * (len(s) - 1))
    n = starts[-1]
    write_dataset(a.out, os.path.abspath(a.target), layers, target.n_vocab, np.concatenate(tokens),
                  np.concatenate(argmax), np.concatenate(feats), np.array(starts))
    agree = float(np.mean(np.concatenate([am[:-1] == tk[1:] for am, tk in zip(argmax, tokens)])))
    print(f"{a.out}: {n} rows, {len(pieces)} sequences in {time.time() - t0:.0f}s; next-token CE "
          f"{sum(ces) / max(1, n - len(pieces)):.3f} nats, argmax == next token {100 * agree:.1f}%", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
