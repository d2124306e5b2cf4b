#!/usr/bin/env python3
"""Writes spm_vocab.tsv: a small synthetic SentencePiece ("llama") vocabulary.

Deterministic (no randomness, no downloads). Rows are "type<TAB>score<TAB>text"
in id order, text escaped as the fixture tools read it (\\\\ \\n \\r \\t \\xHH).

Layout, like a Llama-2 vocab in miniature:
  0 <unk> (unknown), 1 <s>, 2 </s> (control), 3..258 <0x00>..<0xFF> (byte),
  then special tokens, then pieces learned by a tiny BPE run over CORPUS:
  single characters first, then merge results scored -(merge index // 2), so
  every two consecutive merges share a score (ties exercise leftmost-first).
"""
import collections
import os

CORPUS = """
The quick brown fox jumps over the lazy dog. A tokenizer splits text into pieces,
and the pieces into ids. In the beginning the model reads the words, then it
writes them back. Hello world, hello there! It's a test: we're testing the
tokenizer's handling of contractions, numbers like 2024 and 3.14159, and
punctuation (brackets, quotes "like this", dashes - and -- too).
Words that repeat: the the the and and of of to to in in is is that that it it.
International text: café naïve résumé über straße déjà vu.
Русский текст и привет мир. 世界 你好 世界你好 语言模型 日本語 한국어.
Code: def main(): return 0 # comment; int x = 42; for i in range(10): print(i)
"""

# Special tokens after the byte tokens: (text, type). "<|im" is user-defined and a
# prefix of the control token "<|im_start|>", to exercise longest-first splitting.
SPECIALS = [("<|im_start|>", 3), ("<|im_end|>", 3), ("<|user|>", 4), ("<|im", 4)]

# Extra whitespace pieces as Llama vocabularies have them.
EXTRA = ["\u2581\u2581", "\u2581\u2581\u2581\u2581", "\n", "\t"]

N_MERGES = 700


def escape(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append("\\x%02X" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def main():
    words = collections.Counter()
    for w in CORPUS.split():
        words["\u2581" + w] += 1

    rows = [("<unk>", 2, 0.0), ("<s>", 3, 0.0), ("</s>", 3, 0.0)]
    rows += [("<0x%02X>" % b, 6, 0.0) for b in range(256)]
    rows += [(t, ty, 0.0) for t, ty in SPECIALS]

    chars = sorted({c for w in words for c in w})
    seen = {r[0] for r in rows}
    for i, c in enumerate(chars):
        if c not in seen:
            rows.append((c, 1, -1000.0 - i))
            seen.add(c)
    for i, t in enumerate(EXTRA):
        if t not in seen:
            rows.append((t, 1, -500.0 - i))
            seen.add(t)

    # Plain BPE over the word list: merge the most frequent adjacent pair (ties by
    # the pair's text, so the result does not depend on dict order).
    seqs = {w: list(w) for w in words}
    for m in range(N_MERGES):
        pairs = collections.Counter()
        for w, n in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        joined = best[0] + best[1]
        for w in words:
            s = seqs[w]
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
        if joined not in seen:
            rows.append((joined, 1, -float(m // 2)))
            seen.add(joined)

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "spm_vocab.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("# Synthetic SentencePiece vocab (make_spm_vocab.py). Rows: type<TAB>score<TAB>text; row index = id.\n")
        for text, ty, score in rows:
            f.write("%d\t%s\t%s\n" % (ty, repr(float(score)), escape(text)))


if __name__ == "__main__":
    main()
