"""The EAGLE-3 draft head as llama.cpp's `eagle3` architecture computes it, in torch.

One decoder layer fed with a pair (token t, vector g) at position P:
  embd_norm = rmsnorm(embed(t)) * attn_norm          (embed = the TARGET's token_embd, frozen)
  g_norm    = rmsnorm(g) * hidden_norm
  x         = [embd_norm, g_norm]                      (2E)
  q, k, v   = Wq x, Wk x, Wv x; RoPE(q, k) at P (GGML "normal" mode: adjacent pairs)
  h         = Wo attention(q, k, v) + g                (raw g: norm_before_residual = false)
  h2        = h + Wdown(silu(Wgate n) * Wup n),  n = rmsnorm(h) * ffn_norm
  logits    = Wout(rmsnorm(h2) * output_norm)         over the K draft tokens
h2 ("prenorm") is the g of the next chained draft step; the first step's g is
fc(features) with features = the target's residual stream at 3 layers.

Training-time test (TTT): `ttt_forward` unrolls n_steps chained steps for every
anchor of a window at once; see attention() for the mask.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class HeadConfig:
    n_embd: int                 # E: draft hidden size (= target hidden size here)
    target_n_embd: int          # Et
    target_layers: list[int] = field(default_factory=lambda: [2, 12, 21])
    n_vocab: int = 151936       # target vocabulary (the head's logits are scattered into it)
    n_draft_vocab: int = 16384  # K
    n_head: int = 14
    n_head_kv: int = 2
    head_dim: int = 64
    n_ff: int = 2432
    rope_base: float = 1000000.0
    rms_eps: float = 1e-6

    def to_dict(self) -> dict:
        return asdict(self)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # In fp32 whatever autocast does to the matmuls around it: llama.cpp normalizes in fp32.
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """GGML_ROPE_TYPE_NORMAL: rotates the adjacent pairs (x[2i], x[2i+1]) by
    theta_i = pos * base^(-2i/hd). Training with this layout means Wq/Wk are written
    to the GGUF as they are (no head permutation as HF->GGUF llama conversion does).
    x: [B, T, H, hd]; positions: [T] (int)."""
    hd = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, hd, 2, dtype=torch.float64, device=x.device) / hd)
    theta = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [T, hd/2]
    cos = torch.cos(theta).float()[None, :, None, :]
    sin = torch.sin(theta).float()[None, :, None, :]
    x = x.float()
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2)


@functools.lru_cache(maxsize=16)
def ttt_mask(length: int, n_chain: int, device=None) -> torch.Tensor:
    """[L, (1+n_chain)L] bool, True = may attend: causal over the step-0 keys, then for each
    chained step only the same anchor's key (the diagonal)."""
    blocks = [torch.ones(length, length, dtype=torch.bool, device=device).tril()]
    blocks += [torch.eye(length, dtype=torch.bool, device=device)] * n_chain
    return torch.cat(blocks, 1)


class Eagle3Head(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        e, hd = cfg.n_embd, cfg.head_dim
        self.fc = nn.Linear(3 * cfg.target_n_embd, e, bias=False)
        self.attn_norm = nn.Parameter(torch.ones(e))    # on the token embedding
        self.hidden_norm = nn.Parameter(torch.ones(e))  # on g (GGUF: attn_norm_2)
        self.wq = nn.Linear(2 * e, cfg.n_head * hd, bias=False)
        self.wk = nn.Linear(2 * e, cfg.n_head_kv * hd, bias=False)
        self.wv = nn.Linear(2 * e, cfg.n_head_kv * hd, bias=False)
        self.wo = nn.Linear(cfg.n_head * hd, e, bias=False)
        self.ffn_norm = nn.Parameter(torch.ones(e))
        self.w_gate = nn.Linear(e, cfg.n_ff, bias=False)
        self.w_up = nn.Linear(e, cfg.n_ff, bias=False)
        self.w_down = nn.Linear(cfg.n_ff, e, bias=False)
        self.output_norm = nn.Parameter(torch.ones(e))
        self.lm_head = nn.Linear(e, cfg.n_draft_vocab, bias=False)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for m in (self.fc, self.wq, self.wk, self.wv, self.wo, self.w_gate, self.w_up, self.w_down, self.lm_head):
            nn.init.normal_(m.weight, std=std)
        # Output projections start smaller so the untrained block is close to the identity
        # on g (GPT-2 style residual scaling).
        for m in (self.wo, self.w_down):
            nn.init.normal_(m.weight, std=std / math.sqrt(2))

    # --- one decoder step, the pieces inference also runs ---------------------------------

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """g of the first step: fc over the 3 concatenated target layers (no norm before fc)."""
        return self.fc(features)

    def project(self, embd: torch.Tensor, g: torch.Tensor, positions: torch.Tensor):
        """q [B,T,H,hd], k and v [B,T,Hkv,hd]; q and k rotated to `positions`."""
        c = self.cfg
        x = torch.cat((rms_norm(embd, self.attn_norm, c.rms_eps), rms_norm(g, self.hidden_norm, c.rms_eps)), -1)
        b, t = x.shape[:2]
        q = self.wq(x).view(b, t, c.n_head, c.head_dim)
        k = self.wk(x).view(b, t, c.n_head_kv, c.head_dim)
        v = self.wv(x).view(b, t, c.n_head_kv, c.head_dim)
        return rope(q, positions, c.rope_base), rope(k, positions, c.rope_base), v.float()

    def finish(self, attn_out: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """attn_out [B,T,H*hd] -> prenorm h2 [B,T,E]."""
        eps = self.cfg.rms_eps
        h = self.wo(attn_out) + g.float()
        n = rms_norm(h, self.ffn_norm, eps)
        return h + self.w_down(F.silu(self.w_gate(n)) * self.w_up(n))

    def logits(self, prenorm: torch.Tensor) -> torch.Tensor:
        return self.lm_head(rms_norm(prenorm, self.output_norm, self.cfg.rms_eps))

    # --- training-time test ----------------------------------------------------------------

    def attention(self, q, k0, v0, chain_k, chain_v):
        """TTT attention for one unrolled step j = len(chain_k) (0 = plain causal).

        q: [B,L,H,hd], the step-j state of every anchor p (position p+j).
        k0, v0: [B,L,Hkv,hd], the step-0 keys/values of positions 0..L-1.
        chain_k/v: j tensors [B,L,Hkv,hd]; entry i-1 is the step-i state of the same anchors.
        Anchor p's query sees step-0 keys at positions 0..p (what the target-verified prefix
        left in the draft's KV cache) plus its own chain's steps 1..j (the "diagonal" keys: the
        draft tokens it appended itself), exactly like chained drafting at inference.
        The keys are concatenated as [step 0 | step 1 | ... | step j] (L each) under the mask
        [causal | identity | ... | identity]. Returns [B,L,H*hd].
        """
        c = self.cfg
        b, length = q.shape[:2]
        keys = torch.cat([k0] + list(chain_k), 1).transpose(1, 2)  # [B,Hkv,(j+1)L,hd]
        values = torch.cat([v0] + list(chain_v), 1).transpose(1, 2)
        # fp32 even under bf16 autocast: a few % of the FLOPs, and a sharper softmax.
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(
                q.float().transpose(1, 2), keys.float(), values.float(),
                attn_mask=ttt_mask(length, len(chain_k), q.device), scale=1.0 / math.sqrt(c.head_dim),
                enable_gqa=True)  # query head h reads kv head h // (H/Hkv), as ggml broadcasts
        return out.transpose(1, 2).reshape(b, length, c.n_head * c.head_dim)

    def ttt_forward(self, features: torch.Tensor, step_embds: list[torch.Tensor]) -> list[torch.Tensor]:
        """features [B,L,3Et]; step_embds[j] [B,L,E] = embedding of the step-j input token of
        each anchor (tokens[p+j+1]). Returns the draft logits [B,L,K] of each step."""
        length = features.shape[1]
        pos = torch.arange(length, device=features.device)
        g = self.encode(features)
        q, k0, v0 = self.project(step_embds[0], g, pos)
        chain_k, chain_v, all_logits = [], [], []
        for j, embd in enumerate(step_embds):
            if j > 0:
                q, k, v = self.project(embd, g, pos + j)
                chain_k.append(k)
                chain_v.append(v)
            g = self.finish(self.attention(q, k0, v0, chain_k, chain_v), g)
            all_logits.append(self.logits(g))
        return all_logits
