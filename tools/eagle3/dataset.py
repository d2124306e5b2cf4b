"""The feature dataset that `kestrel` dumps for EAGLE-3 training, and windows of it.

A dataset is a directory:
  meta.json       {"target", "n_embd", "layers": [l0, l1, l2], "n_vocab", "n_rows", "n_seqs"}
  tokens.i32      int32 [N]          the token sequences, concatenated
  argmax.i32      int32 [N]          the target's greedy next token after each row
  features.f16    float16 [N, 3*Et]  residual stream at the input of l0, l1, l2
  seq_starts.i64  int64 [S+1]        sequence i = rows [seq_starts[i], seq_starts[i+1])

Everything is memory-mapped: datasets can be larger than what we want in RAM.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np


# meta.json's optional "feature_dtype" -> (file, numpy dtype)
FEATURE_FILES = {"f16": ("features.f16", "<f2"), "f32": ("features.f32", "<f4")}


@dataclass
class Window:
    """Rows [r0, r0+L) of one sequence, as the TTT forward needs them.

    Head position p (0 <= p < L) pairs features[r0+p] with tokens[r0+p+1].
    The step-j state of anchor p uses tokens[r0+p+j+1] and label argmax[r0+p+j+1],
    so token/label/valid have L + n_steps entries: step j reads [j, j+L).
    """
    features: np.ndarray  # float16 (or float32) [L, 3*Et]
    tokens: np.ndarray    # int64 [L + n_steps]: tokens[r0+1+i]
    labels: np.ndarray    # int64 [L + n_steps]: argmax[r0+1+i]
    valid: np.ndarray     # bool  [L + n_steps]: r0+1+i lies inside the sequence


class FeatureDataset:
    def __init__(self, path: str):
        self.path = path
        with open(os.path.join(path, "meta.json")) as f:
            self.meta = json.load(f)
        self.n_embd = int(self.meta["n_embd"])
        self.layers = [int(x) for x in self.meta["layers"]]
        self.n_vocab = int(self.meta["n_vocab"])
        n_rows = int(self.meta["n_rows"])
        n_seqs = int(self.meta["n_seqs"])
        if len(self.layers) != 3:
            raise ValueError(f"{path}: EAGLE-3 needs exactly 3 feature layers, meta has {self.layers}")

        def open_array(name, dtype, shape):
            return np.memmap(os.path.join(path, name), dtype=dtype, mode="r", shape=shape)

        self.tokens = open_array("tokens.i32", "<i4", (n_rows,))
        self.argmax = open_array("argmax.i32", "<i4", (n_rows,))
        kind = self.meta.get("feature_dtype", "f16")  # optional key; f16 is the format
        if kind not in FEATURE_FILES:
            raise ValueError(f"{path}: feature_dtype {kind!r} is not one of {sorted(FEATURE_FILES)}")
        self.features = open_array(*FEATURE_FILES[kind], (n_rows, 3 * self.n_embd))
        self.seq_starts = np.array(open_array("seq_starts.i64", "<i8", (n_seqs + 1,)))
        if self.seq_starts[0] != 0 or self.seq_starts[-1] != n_rows or np.any(np.diff(self.seq_starts) < 0):
            raise ValueError(f"{path}: seq_starts must rise from 0 to n_rows={n_rows}")

    @property
    def n_rows(self) -> int:
        return int(self.seq_starts[-1])

    def window(self, start: int, end: int, r0: int, length: int, n_steps: int) -> Window:
        """Rows [r0, min(r0+length, end)) of the sequence [start, end)."""
        assert start <= r0 < end
        last_feature = min(r0 + length, end)
        ext = length + n_steps
        lo, hi = r0 + 1, min(r0 + 1 + ext, end)  # rows that give tokens and labels
        tokens = np.zeros(ext, np.int64)
        labels = np.zeros(ext, np.int64)
        valid = np.zeros(ext, bool)
        tokens[: hi - lo] = self.tokens[lo:hi]
        labels[: hi - lo] = self.argmax[lo:hi]
        valid[: hi - lo] = True
        return Window(np.asarray(self.features[r0:last_feature]), tokens, labels, valid)


def write_dataset(path: str, target: str, layers, n_vocab: int, tokens, argmax, features, seq_starts) -> None:
    """Writes the format above (tests and fake data use it; kestrel writes the real one)."""
    os.makedirs(path, exist_ok=True)
    features = np.asarray(features, dtype="<f2")
    n_rows, width = features.shape
    meta = {"target": target, "n_embd": width // 3, "layers": [int(x) for x in layers], "feature_dtype": "f16",
            "n_vocab": int(n_vocab), "n_rows": int(n_rows), "n_seqs": len(seq_starts) - 1}
    with open(os.path.join(path, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    np.asarray(tokens, "<i4").tofile(os.path.join(path, "tokens.i32"))
    np.asarray(argmax, "<i4").tofile(os.path.join(path, "argmax.i32"))
    features.tofile(os.path.join(path, "features.f16"))
    np.asarray(seq_starts, "<i8").tofile(os.path.join(path, "seq_starts.i64"))


# A sequence is (dataset index, first row, end row). Only sequences of at least
# 2 rows have a head position (position P needs token P+1).
def list_sequences(datasets: list[FeatureDataset]) -> np.ndarray:
    rows = []
    for i, ds in enumerate(datasets):
        s = ds.seq_starts
        for a, b in zip(s[:-1], s[1:]):
            if b - a >= 2:
                rows.append((i, int(a), int(b)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def split_sequences(seqs: np.ndarray, val_fraction: float, seed: int):
    """Deterministic train/validation split by sequence (never within one)."""
    order = np.random.default_rng(seed).permutation(len(seqs))
    n_val = int(round(len(seqs) * val_fraction))
    if len(seqs) >= 2:
        n_val = min(max(n_val, 1), len(seqs) - 1)
    else:
        n_val = 0
    val = seqs[np.sort(order[:n_val])]
    train = seqs[np.sort(order[n_val:])]
    return train, val


def count_labels_and_tokens(datasets, seqs, n_vocab: int):
    """Frequencies of the labels (argmax[P+1]) and input tokens of the given sequences."""
    labels = np.zeros(n_vocab, np.int64)
    tokens = np.zeros(n_vocab, np.int64)
    for d, a, b in seqs:
        ds = datasets[d]
        labels += np.bincount(np.asarray(ds.argmax[a + 1:b]), minlength=n_vocab)[:n_vocab]
        tokens += np.bincount(np.asarray(ds.tokens[a:b]), minlength=n_vocab)[:n_vocab]
    return labels, tokens


def build_draft_vocab(label_counts: np.ndarray, token_counts: np.ndarray, size: int) -> np.ndarray:
    """d2t: the `size` most frequent labels (ties: more frequent as input token, then lower id),
    sorted by target id. Fills up with never-predicted ids only when the data has too few."""
    size = min(size, len(label_counts))
    ids = np.arange(len(label_counts))
    # lexsort sorts by the last key first; negative counts = descending.
    order = np.lexsort((ids, -token_counts, -label_counts))
    return np.sort(order[:size]).astype(np.int64)


def target_to_draft(d2t: np.ndarray, n_vocab: int) -> np.ndarray:
    """Inverse of d2t; -1 for target ids outside the draft vocabulary."""
    t2d = np.full(n_vocab, -1, np.int64)
    t2d[d2t] = np.arange(len(d2t))
    return t2d


def sample_train_windows(rng: np.random.Generator, datasets, seqs: np.ndarray, n_windows: int,
                         length: int, n_steps: int) -> list[Window]:
    """Random crops; a sequence is picked with probability ~ its number of head positions,
    so every training position is equally likely whatever the sequence lengths."""
    weights = (seqs[:, 2] - seqs[:, 1] - 1).astype(np.float64)
    picks = rng.choice(len(seqs), size=n_windows, p=weights / weights.sum())
    windows = []
    for i in picks:
        d, a, b = (int(x) for x in seqs[i])
        last_start = max(a, b - 1 - length)  # the last head position is row b-2
        r0 = int(rng.integers(a, last_start + 1))
        windows.append(datasets[d].window(a, b, r0, length, n_steps))
    return windows


def validation_windows(datasets, seqs: np.ndarray, length: int, n_steps: int, max_windows: int) -> list[Window]:
    """Consecutive non-overlapping windows of the validation sequences; when there are more than
    max_windows, an evenly spaced subset (deterministic)."""
    spans = []
    for d, a, b in seqs:
        for r0 in range(int(a), int(b) - 1, length):
            spans.append((int(d), int(a), int(b), r0))
    if len(spans) > max_windows:
        keep = np.linspace(0, len(spans) - 1, max_windows).round().astype(int)
        spans = [spans[i] for i in keep]
    return [datasets[d].window(a, b, r0, length, n_steps) for d, a, b, r0 in spans]


def collate(windows: list[Window], n_steps: int):
    """Pads windows to a common length. Padding is invalid and, being later than every
    real position, is never attended by one (attention is causal)."""
    length = max(len(w.features) for w in windows)
    width = windows[0].features.shape[1]
    b = len(windows)
    feats = np.zeros((b, length, width), np.float32)
    tokens = np.zeros((b, length + n_steps), np.int64)
    labels = np.zeros((b, length + n_steps), np.int64)
    valid = np.zeros((b, length + n_steps), bool)
    for i, w in enumerate(windows):
        n = len(w.features)
        feats[i, :n] = w.features
        m = min(length + n_steps, len(w.tokens))
        tokens[i, :m] = w.tokens[:m]
        labels[i, :m] = w.labels[:m]
        valid[i, :m] = w.valid[:m]
    return feats, tokens, labels, valid
