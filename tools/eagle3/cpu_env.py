"""CPU settings the torch tools here need, applied on import: import this before torch.

The machine has 2 cores that other work shares. OpenMP's default spin-waiting turns a
2-thread torch into a 5x slowdown as soon as another process runs (measured: 65 s instead
of 11 s for reference_features.py on 4k tokens); passive waiting costs nothing measurable
when the cores are free. An explicit OMP_WAIT_POLICY in the environment wins.
"""
import ctypes
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory() -> None:
    """glibc serves blocks over 32 MB (the [tokens, K] logits, attention scores) with fresh
    mmaps and unmaps them on free, so each training step page-faults them in again: copies
    of the logits ran 4x slower and ~20% of the time went to the kernel. Allocating from the
    heap only, and never trimming it, keeps those pages mapped across steps."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 40)
