#!/usr/bin/env python3
"""Fake feature datasets (and a tiny fake target GGUF) for tests, load checks and speed
measurements. The labels follow a fixed rule of the input token (argmax[i] = rule(tokens[i])),
so a head can learn them; the features are Gaussian noise (they carry no information).

  fake_data.py OUT_DIR --target T.gguf [--rows 20000] [--seqs 40] [--layers 2,12,21]

n_embd and n_vocab are read from the target GGUF.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dataset import write_dataset  # noqa: E402


def make_fake_dataset(path: str, target: str, n_embd: int, n_vocab: int, layers=(2, 12, 21), n_rows: int = 2000,
                      n_seqs: int = 8, n_token_ids: int = 512, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    # Sequences of uneven length (some short) that add up to n_rows.
    cuts = np.sort(rng.choice(np.arange(1, n_rows), size=n_seqs - 1, replace=False))
    seq_starts = np.concatenate(([0], cuts, [n_rows])).astype(np.int64)
    ids = rng.choice(n_vocab, size=min(n_token_ids, n_vocab), replace=False)
    tokens = ids[rng.integers(0, len(ids), n_rows)]
    rule = rng.permutation(ids)  # label of a token = another id of the same small set
    lookup = dict(zip(ids.tolist(), rule.tolist()))
    argmax = np.array([lookup[t] for t in tokens.tolist()], np.int64)
    features = rng.standard_normal((n_rows, 3 * n_embd)).astype(np.float16)
    write_dataset(path, target, layers, n_vocab, tokens, argmax, features, seq_starts)


def write_fake_target(path: str, n_vocab: int = 300, n_embd: int = 64, n_layer: int = 4, tied: bool = False,
                      seed: int = 0) -> None:
    """A GGUF with what train.py reads from a target: hyperparameters, tokenizer.*, token_embd,
    output (unless tied) and output_norm. Not a runnable model."""
    from gguf import GGUFWriter, GGUFValueType

    rng = np.random.default_rng(seed)
    w = GGUFWriter(path, "qwen2")
    w.add_uint32("qwen2.block_count", n_layer)
    w.add_uint32("qwen2.embedding_length", n_embd)
    w.add_uint32("qwen2.attention.head_count", 4)
    w.add_uint32("qwen2.attention.head_count_kv", 2)
    w.add_float32("qwen2.rope.freq_base", 1000000.0)
    w.add_float32("qwen2.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_key_value("tokenizer.ggml.tokens", [f"t{i}" for i in range(n_vocab)], GGUFValueType.ARRAY,
                    sub_type=GGUFValueType.STRING)
    w.add_key_value("tokenizer.ggml.token_type", [1] * n_vocab, GGUFValueType.ARRAY, sub_type=GGUFValueType.INT32)
    w.add_uint32("tokenizer.ggml.eos_token_id", n_vocab - 1)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_tensor("token_embd.weight", rng.standard_normal((n_vocab, n_embd)).astype(np.float32))
    if not tied:
        w.add_tensor("output.weight", (0.05 * rng.standard_normal((n_vocab, n_embd))).astype(np.float32))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--target", required=True)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--seqs", type=int, default=40)
    p.add_argument("--layers", default="2,12,21")
    p.add_argument("--token-ids", type=int, default=2000, help="distinct token ids used")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    from gguf_io import TargetModel
    t = TargetModel(a.target)
    make_fake_dataset(a.out, os.path.abspath(a.target), t.n_embd, t.n_vocab, [int(x) for x in a.layers.split(",")],
                      a.rows, a.seqs, a.token_ids, a.seed)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
