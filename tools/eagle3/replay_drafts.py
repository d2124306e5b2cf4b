#!/usr/bin/env python3
"""End-to-end check of a head GGUF against llama.cpp: runs llama-speculative-simple with
the head (greedy), then replays the same drafting in torch (reference_features.py's target
forward + the head read back from the GGUF) on the text llama.cpp produced, and prints both
acceptance counts. With greedy verification they must agree (up to the last draft, which
llama.cpp cuts at -n): an accepted count that differs means the trainer's head and
llama.cpp's eagle3 graph compute different things (layout, RoPE, input pairing, d2t...).

  replay_drafts.py --llama-bin DIR --target T.gguf --head H.gguf --prompt "def fib(n):"

Needs a target llama.cpp can tap (its graph must expose layer inputs: llama arch does;
qwen2 does not in llama.cpp 0.3.36) and reference_features.py knows (llama, qwen2).
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_env  # noqa: E402,F401  (before torch: OpenMP reads its settings when torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gguf_io import TargetModel, read_head  # noqa: E402
from head import Eagle3Head  # noqa: E402
from reference_features import ReferenceModel  # noqa: E402


def run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def tokenize(bin_dir, target, text, env) -> list[int]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        out = run([os.path.join(bin_dir, "llama-tokenize"), "-m", target, "-f", f.name, "--ids", "--log-disable"], env)
    finally:
        os.unlink(f.name)
    return ast.literal_eval([line for line in out.stdout.splitlines() if line.startswith("[")][-1])


def replay(preds: list[np.ndarray], tokens: list[int], n_prompt: int, n_max: int):
    """llama.cpp's greedy loop: a draft seeded at position P (the last verified token whose
    features the target computed; token P+1 = its freshest sample) proposes tokens P+2.., the
    target accepts the leading run that equals its own greedy choice, and the next draft is
    seeded after it. preds[j][P] = step j's draft at anchor P (target ids)."""
    p, drafted, accepted = n_prompt - 1, 0, 0
    while p + 2 < len(tokens):
        n = 0
        while n < n_max and p + n + 2 < len(tokens) and preds[n][p] == tokens[p + n + 2]:
            n += 1
        drafted += n_max
        accepted += n
        p += n + 1
    return drafted, accepted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bin", required=True, help="llama.cpp bin dir (also appended to LD_LIBRARY_PATH)")
    ap.add_argument("--target", required=True)
    ap.add_argument("--head", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--n-max", type=int, default=3, help="draft length (--spec-draft-n-max)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    env = dict(os.environ)
    # Appended: a LD_LIBRARY_PATH already set (e.g. a patched libllama) comes first.
    env["LD_LIBRARY_PATH"] = (env["LD_LIBRARY_PATH"] + ":" if env.get("LD_LIBRARY_PATH") else "") + a.llama_bin

    out = run([os.path.join(a.llama_bin, "llama-speculative-simple"), "-m", a.target, "-md", a.head,
               "--spec-type", "draft-eagle3", "-p", a.prompt, "-n", str(a.n), "-t", str(a.threads),
               "--temp", "0", "--spec-draft-n-max", str(a.n_max)], env)
    counts = {k: int(v) for k, v in re.findall(r"(n_drafted|n_accept)\s*=\s*(\d+)", out.stderr)}
    print(f"llama.cpp: n_drafted {counts.get('n_drafted')}, n_accept {counts.get('n_accept')}")

    # The program prints "\n\n" + prompt + generation; re-tokenizing it gives llama.cpp's tokens
    # (greedy text tokenizes back to itself but for rare merges, reported below).
    text = out.stdout[2:] if out.stdout.startswith("\n\n") else out.stdout
    prompt, tokens = tokenize(a.llama_bin, a.target, a.prompt, env), tokenize(a.llama_bin, a.target, text, env)
    if tokens[:len(prompt)] != prompt:
        raise SystemExit("the output does not start with the prompt's tokens")

    cfg, weights, d2t = read_head(a.head)
    head = Eagle3Head(cfg)
    head.load_state_dict({k + (".weight" if isinstance(getattr(head, k), torch.nn.Linear) else ""): torch.from_numpy(v)
                          for k, v in weights.items()})
    head.eval()
    target = TargetModel(a.target)
    features, argmax, _ = ReferenceModel(target).forward(tokens, cfg.target_layers)
    n_p = len(prompt)
    same = float((argmax[n_p - 1:-1].numpy() == np.array(tokens[n_p:])).mean())
    print(f"prompt {n_p} tokens, output {len(tokens) - n_p}; torch target's greedy choice == llama.cpp's "
          f"token at {100 * same:.1f}% of the output positions")

    embed = torch.from_numpy(target.rows("token_embd.weight"))
    padded = torch.tensor(tokens + [0] * (a.n_max + 1))
    n = len(tokens)
    with torch.no_grad():
        step_embds = [embed[padded[j + 1:j + 1 + n]].unsqueeze(0) for j in range(a.n_max)]
        logits = head.ttt_forward(features.unsqueeze(0), step_embds)
    preds = [d2t[lg[0].argmax(-1).numpy()] for lg in logits]
    drafted, accepted = replay(preds, tokens, n_p, a.n_max)
    print(f"torch replay: n_drafted {drafted}, n_accept {accepted}")
    return 0 if accepted == counts.get("n_accept") else 1


if __name__ == "__main__":
    sys.exit(main())
