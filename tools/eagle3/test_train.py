#!/usr/bin/env python3
"""Tests of tools/eagle3 (< 1 min on 2 cores):
  ~/.cache/kestrel/venv-eagle3/bin/python tools/eagle3/test_train.py
(a) the batched training-time-test forward equals drafting step by step as inference does it,
(b) the head GGUF reads back with llama.cpp's eagle3 names, shapes, types, keys and d2t,
(c) training learns a learnable toy, and resumes from its checkpoint.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_env  # noqa: E402,F401  (before torch)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dataset as dsm  # noqa: E402
import fake_data  # noqa: E402
import train  # noqa: E402
from gguf import GGMLQuantizationType, GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402
from gguf_io import TENSOR_NAMES, TargetModel, read_head, write_head  # noqa: E402
from head import Eagle3Head, HeadConfig, rope  # noqa: E402

N_VOCAB, N_EMBD = 300, 64
TINY = dict(n_head=4, n_head_kv=2, head_dim=16, n_ff=128)
TINY_ARGS = ["--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--ffn", "128", "--draft-vocab", "64",
             "--seq-len", "64", "--batch", "4", "--warmup", "10", "--lr", "3e-3", "--log-seconds", "1000",
             "--threads", "1"]  # tiny matrices: a 2nd thread only adds contention


class Fixture:
    """A tiny target GGUF and a learnable fake dataset, made once."""
    dir = None

    @classmethod
    def get(cls):
        if cls.dir is None:
            cls.dir = tempfile.mkdtemp(prefix="eagle3-test-")
            cls.target = os.path.join(cls.dir, "target.gguf")
            cls.data = os.path.join(cls.dir, "data")
            fake_data.write_fake_target(cls.target, N_VOCAB, N_EMBD)
            fake_data.make_fake_dataset(cls.data, cls.target, N_EMBD, N_VOCAB, n_rows=3000, n_seqs=12,
                                        n_token_ids=100)
        return cls


# --- (a) TTT forward vs step-by-step drafting ------------------------------------------------

def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * w


def rope_pairs(x, pos, base):
    """Independent GGML-normal RoPE: pair (x[2i], x[2i+1]) as a complex number times e^(i*theta)."""
    hd = x.shape[-1]
    z = x[..., 0::2] + 1j * x[..., 1::2]
    z = z * np.exp(1j * pos * base ** (-np.arange(0, hd, 2) / hd))
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


class StepwiseDrafter:
    """The head run token by token with a KV cache, in float64 numpy, the way a runtime drafts:
    a prefix of (token[P+1], fc(features[P])) pairs at positions 0..P, then chained steps whose g
    is the previous step's prenorm. Shares no code with head.py, only the weights."""

    def __init__(self, model: Eagle3Head):
        self.c = model.cfg
        self.w = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
        self.keys, self.values = [], []

    def step(self, embd, g, pos):
        c, w = self.c, self.w
        x = np.concatenate([rms(embd, w["attn_norm"], c.rms_eps), rms(g, w["hidden_norm"], c.rms_eps)])
        q = (w["wq.weight"] @ x).reshape(c.n_head, c.head_dim)
        k = (w["wk.weight"] @ x).reshape(c.n_head_kv, c.head_dim)
        v = (w["wv.weight"] @ x).reshape(c.n_head_kv, c.head_dim)
        self.keys.append(rope_pairs(k, pos, c.rope_base))
        self.values.append(v)
        q = rope_pairs(q, pos, c.rope_base)
        rep = c.n_head // c.n_head_kv
        heads = []
        for h in range(c.n_head):
            s = np.array([q[h] @ kk[h // rep] for kk in self.keys]) / math.sqrt(c.head_dim)
            p = np.exp(s - s.max())
            p /= p.sum()
            heads.append(sum(pi * vv[h // rep] for pi, vv in zip(p, self.values)))
        hres = w["wo.weight"] @ np.concatenate(heads) + g
        n = rms(hres, w["ffn_norm"], c.rms_eps)
        gate = w["w_gate.weight"] @ n
        h2 = hres + w["w_down.weight"] @ (gate / (1 + np.exp(-gate)) * (w["w_up.weight"] @ n))
        logits = w["lm_head.weight"] @ rms(h2, w["output_norm"], c.rms_eps)
        return logits, h2


class TestTTT(unittest.TestCase):
    def test_rope_is_ggml_normal(self):
        x = torch.randn(1, 3, 2, 16)
        pos = torch.tensor([0, 5, 1000])
        got = rope(x, pos, 1e6).numpy()
        want = np.stack([rope_pairs(x[0, t].double().numpy(), int(pos[t]), 1e6) for t in range(3)])
        np.testing.assert_allclose(got[0], want, atol=1e-5)

    def test_ttt_matches_stepwise_drafting(self):
        fx = Fixture.get()
        torch.manual_seed(0)
        ds = dsm.FeatureDataset(fx.data)
        embed = torch.from_numpy(TargetModel(fx.target).rows("token_embd.weight"))
        cfg = HeadConfig(n_embd=N_EMBD, target_n_embd=N_EMBD, n_vocab=N_VOCAB, n_draft_vocab=N_VOCAB,
                         rope_base=1e4, **TINY)  # small base: the rotation matters at these distances
        model = Eagle3Head(cfg)
        with torch.no_grad():  # bigger weights than the init so attention is far from uniform
            for p in model.parameters():
                p.add_(torch.randn_like(p) * (0.15 if p.ndim == 2 else 0.3))
        n_steps, length = 4, 24
        a, b = (int(x) for x in ds.seq_starts[:2])
        r0 = a + 3
        identity = torch.arange(N_VOCAB)
        batch = train.Batch([ds.window(a, b, r0, length, n_steps)], n_steps, embed, identity)
        with torch.no_grad():
            ttt = [lg[0].double().numpy() for lg in model.ttt_forward(batch.features, batch.step_embds())]

        feats = np.asarray(ds.features, np.float64)
        fc = model.fc.weight.detach().double().numpy()
        emb = embed.double().numpy()
        for anchor in (0, 1, 7, length - 1):
            drafter = StepwiseDrafter(model)
            for p in range(anchor + 1):  # the verified prefix, one token at a time
                logits, prenorm = drafter.step(emb[ds.tokens[r0 + p + 1]], fc @ feats[r0 + p], p)
            np.testing.assert_allclose(ttt[0][anchor], logits, rtol=1e-4, atol=1e-4)
            for j in range(1, n_steps):  # chained draft steps: teacher-forced token, own prenorm
                logits, prenorm = drafter.step(emb[ds.tokens[r0 + anchor + j + 1]], prenorm, anchor + j)
                np.testing.assert_allclose(ttt[j][anchor], logits, rtol=1e-4, atol=1e-4,
                                           err_msg=f"anchor {anchor} step {j}")
            # and the labels line up: step j of anchor p predicts argmax[p + j + 1]
            for j in range(n_steps):
                self.assertEqual(int(batch.step_targets(j)[0, anchor]), int(ds.argmax[r0 + anchor + j + 1]))

    def test_padding_and_sequence_end_are_masked(self):
        fx = Fixture.get()
        ds = dsm.FeatureDataset(fx.data)
        a, b = (int(x) for x in ds.seq_starts[:2])
        w = ds.window(a, b, b - 5, 64, 4)  # 5 rows left: head positions b-5..b-2
        self.assertEqual(len(w.features), 5)
        self.assertEqual(int(w.valid.sum()), 4)  # tokens of rows b-4..b-1
        t2d = torch.arange(N_VOCAB)
        batch = train.Batch([w, ds.window(a, b, a, 64, 4)], 4, torch.zeros(N_VOCAB, N_EMBD), t2d)
        for j in range(4):
            self.assertEqual(int((batch.step_targets(j)[0] != train.IGNORE).sum()), 4 - j)


# --- (b) GGUF layout -------------------------------------------------------------------------

class TestGGUF(unittest.TestCase):
    def check_head_file(self, path, model, d2t, matrix_type):
        c = model.cfg
        r = GGUFReader(path)
        f = r.fields
        self.assertEqual(f["general.architecture"].contents(), "eagle3")
        self.assertEqual(f["eagle3.block_count"].contents(), 1)
        self.assertEqual(f["eagle3.embedding_length"].contents(), c.n_embd)
        self.assertEqual(f["eagle3.feed_forward_length"].contents(), c.n_ff)
        self.assertEqual(f["eagle3.attention.head_count"].contents(), c.n_head)
        self.assertEqual(f["eagle3.attention.head_count_kv"].contents(), c.n_head_kv)
        self.assertEqual(f["eagle3.rope.dimension_count"].contents(), c.head_dim)
        self.assertEqual(f["eagle3.target_layers"].contents(), [2, 12, 21])
        self.assertEqual(f["eagle3.target_layers"].types[-1].name, "INT32")
        self.assertEqual(f["eagle3.target_hidden_size"].types[0].name, "UINT32")
        self.assertEqual(f["eagle3.target_hidden_size"].contents(), c.target_n_embd)
        self.assertIs(f["eagle3.norm_before_residual"].contents(), False)
        self.assertEqual(f["eagle3.vocab_size"].contents(), N_VOCAB)
        self.assertEqual(f["kestrel.eagle3.target_file"].contents(), "target.gguf")
        self.assertEqual(f["tokenizer.ggml.tokens"].contents()[:3], ["t0", "t1", "t2"])
        self.assertEqual(len(f["tokenizer.ggml.token_type"].contents()), N_VOCAB)
        self.assertEqual(f["tokenizer.ggml.eos_token_id"].contents(), N_VOCAB - 1)

        tensors = {t.name: t for t in r.tensors}
        e, hd, k = c.n_embd, c.head_dim, c.n_draft_vocab
        want = {  # GGUF dims (ne0 = row length first), as llama.cpp's create_tensor asks
            "fc.weight": [3 * c.target_n_embd, e], "blk.0.attn_norm.weight": [e],
            "blk.0.attn_norm_2.weight": [e], "blk.0.attn_q.weight": [2 * e, c.n_head * hd],
            "blk.0.attn_k.weight": [2 * e, c.n_head_kv * hd], "blk.0.attn_v.weight": [2 * e, c.n_head_kv * hd],
            "blk.0.attn_output.weight": [c.n_head * hd, e], "blk.0.ffn_norm.weight": [e],
            "blk.0.ffn_gate.weight": [e, c.n_ff], "blk.0.ffn_up.weight": [e, c.n_ff],
            "blk.0.ffn_down.weight": [c.n_ff, e], "output_norm.weight": [e], "output.weight": [e, k], "d2t": [k],
        }
        self.assertEqual(set(tensors), set(want))
        self.assertNotIn("token_embd.weight", tensors)
        state = {a: (getattr(model, a).weight if hasattr(getattr(model, a), "weight") else getattr(model, a))
                 for a in TENSOR_NAMES}
        for attr, name in TENSOR_NAMES.items():
            t = tensors[name]
            self.assertEqual([int(x) for x in t.shape], want[name], name)
            expect_type = "F32" if len(want[name]) == 1 else {"f16": "F16", "q8_0": "Q8_0"}[matrix_type]
            self.assertEqual(t.tensor_type.name, expect_type, name)
            back = dequantize(np.asarray(t.data), t.tensor_type).reshape(state[attr].shape)
            ref = state[attr].detach().numpy()
            tol = 1e-6 if expect_type == "F32" else 2e-3 if expect_type == "F16" else 0.02 * np.abs(ref).max()
            np.testing.assert_allclose(back, ref, atol=tol, err_msg=name)
        self.assertEqual(tensors["d2t"].tensor_type, GGMLQuantizationType.I64)
        np.testing.assert_array_equal(np.asarray(tensors["d2t"].data), d2t)
        # and read_head (what replay_drafts.py runs) gives the same head back
        cfg2, weights2, d2t2 = read_head(path)
        want_cfg = {**c.to_dict(), "rms_eps": float(np.float32(c.rms_eps))}  # stored as F32
        self.assertEqual(cfg2.to_dict(), want_cfg)
        np.testing.assert_array_equal(d2t2, d2t)
        for attr in TENSOR_NAMES:
            self.assertEqual(weights2[attr].shape, tuple(state[attr].shape), attr)

    def test_write_f16_and_q8_0(self):
        fx = Fixture.get()
        target = TargetModel(fx.target)
        d2t = np.array([3, 17, 18, 40, 99, 120, 200, 299], np.int64)
        cfg = HeadConfig(n_embd=N_EMBD, target_n_embd=N_EMBD, n_vocab=N_VOCAB, n_draft_vocab=len(d2t), **TINY)
        model = Eagle3Head(cfg)
        with torch.no_grad():
            model.ffn_norm.uniform_(0.5, 1.5)
        weights = train.head_weights(model)
        for kind in ("f16", "q8_0"):
            path = os.path.join(fx.dir, f"head-{kind}.gguf")
            write_head(path, weights, cfg, d2t, target, kind, note="test")
            self.check_head_file(path, model, d2t, kind)

    def test_draft_vocab(self):
        labels = np.array([0, 5, 5, 1, 0, 9])
        tokens = np.array([0, 0, 7, 0, 3, 0])
        # most frequent labels first; ties go to the more frequent input token; sorted by id
        self.assertEqual(dsm.build_draft_vocab(labels, tokens, 2).tolist(), [2, 5])
        self.assertEqual(dsm.build_draft_vocab(labels, tokens, 5).tolist(), [1, 2, 3, 4, 5])
        self.assertEqual(dsm.build_draft_vocab(labels, tokens, 99).tolist(), list(range(6)))


# --- (c) training ----------------------------------------------------------------------------

class TestTraining(unittest.TestCase):
    def test_learns_toy_and_resumes(self):
        """The toy's label is a fixed function of the input token, so the head can reach the
        share of labels inside its 64-token draft vocabulary (~60% on the validation split)."""
        fx = Fixture.get()
        out = os.path.join(fx.dir, "head.gguf")
        common = ["--data", fx.data, "--out", out] + TINY_ARGS
        train.main(common + ["--steps", "30", "--eval-minutes", "1000"])
        first = torch.load(os.path.join(fx.dir, "head.pt"), weights_only=False)
        self.assertEqual(first["step"], 30)
        train.main(common + ["--steps", "200", "--resume", os.path.join(fx.dir, "head.pt"),
                             "--out-last", os.path.join(fx.dir, "last.gguf")])
        last = torch.load(os.path.join(fx.dir, "head.pt"), weights_only=False)
        self.assertEqual(last["step"], 200)
        acc0_before, acc0_after = first["best"]["acc"][0], last["best"]["acc"][0]
        in_vocab = last["best"]["in_vocab"]
        self.assertLess(acc0_before, 0.3)
        self.assertGreater(acc0_after, 0.9 * in_vocab)
        self.assertGreater(last["best"]["acc"][3], 0.9 * in_vocab)  # chained steps learn it too
        self.assertLess(last["best"]["loss"][0], first["best"]["loss"][0] / 4)
        self.assertIn("val acc/step", GGUFReader(out).fields["kestrel.eagle3.train_note"].contents())
        self.assertTrue(os.path.exists(os.path.join(fx.dir, "last.gguf")))


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main()
