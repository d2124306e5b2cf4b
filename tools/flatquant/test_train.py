#!/usr/bin/env python3
"""Tests of the FlatQuant trainer's pieces against independent references (~2 s):
the Q4_0 fake quantization equals gguf-py's Q4_0 (ggml's reference quantizer) at ratio 1,
the folded weights undo the transform, act=a4's fake quantization has its closed form."""
from __future__ import annotations

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402  (sets up the eagle3 path and cpu_env)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf import GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402


class TrainerPieces(unittest.TestCase):
    def test_q4_0_equals_ggml_at_ratio_one(self):
        g = torch.Generator().manual_seed(1)
        w = torch.randn(16, 128, generator=g)
        w[3, 5] = 9.0  # an outlier block
        ours = train.fake_q4_0(w, torch.ones(16)).numpy()
        q = quantize(w.numpy(), GGMLQuantizationType.Q4_0)
        ref = dequantize(q, GGMLQuantizationType.Q4_0).reshape(16, 128)
        # The file keeps the scale in F16: allow its rounding (8 steps of it at most).
        d = np.abs(w.numpy().reshape(16, 4, 32)).max(-1, keepdims=True) / 8
        self.assertTrue(np.all(np.abs(ours - ref).reshape(16, 4, 32) <= d * 8 * 1e-3 + 1e-6))

    def test_clipping_shrinks_the_grid(self):
        w = torch.linspace(-1, 1, 64).reshape(1, 64)
        full = train.fake_q4_0(w, torch.ones(1))
        clipped = train.fake_q4_0(w, torch.full((1,), 0.5))
        self.assertAlmostEqual(full.abs().max().item(), 1.0, places=5)
        self.assertLessEqual(clipped.abs().max().item(), 0.5 + 1e-6)

    def test_fold_undoes_the_transform(self):
        for n in (576, 1536, 96):
            t = train.Transform(n)
            with torch.no_grad():
                t.p1.add_(0.1 * torch.randn_like(t.p1))
                t.p2.add_(0.1 * torch.randn_like(t.p2))
                t.log_s.copy_(0.3 * torch.randn(n))
                x, w = torch.randn(5, n, dtype=torch.float64), torch.randn(7, n, dtype=torch.float64)
                t64 = t.double()
                got = t64(x) @ t64.fold(w).T
            torch.testing.assert_close(got, x @ w.T, rtol=1e-9, atol=1e-9)
            self.assertEqual(t.n1 * t.n2, n)
            self.assertLessEqual(t.n1, t.n2)

    def test_kron_factors(self):
        self.assertEqual(train.kron_factors(576), (24, 24))
        self.assertEqual(train.kron_factors(4864), (64, 76))
        self.assertEqual(train.kron_factors(8960), (80, 112))
        self.assertEqual(train.kron_factors(896), (28, 32))

    def test_a4_closed_form(self):
        x = torch.tensor([[0.0] * 31 + [7.0], [-3.5] + [1.0] * 31])
        x = x.reshape(1, 64)
        y = train.fake_act(x, 4)
        self.assertEqual(y[0, 31].item(), 7.0)     # the block's largest value is code 7 exactly
        self.assertEqual(y[0, 32].item(), -3.5)
        self.assertAlmostEqual(y[0, 33].item(), 1.0, places=6)  # 1.0 / 0.5 = 2 codes exactly
        self.assertTrue(torch.equal(train.fake_act(torch.zeros(1, 32), 4), torch.zeros(1, 32)))


if __name__ == "__main__":
    unittest.main()
