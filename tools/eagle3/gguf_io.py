"""Reading what the head needs from the target GGUF, and writing the head GGUF in the
layout llama.cpp's `eagle3` architecture loads (src/models/eagle3.cpp there)."""
from __future__ import annotations

import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize

ARCH = "eagle3"

# Head parameter (Eagle3Head attribute) -> GGUF tensor name. Matrices are (out, in) in
# numpy; GGUF stores the dims reversed, which is what llama.cpp's create_tensor expects.
TENSOR_NAMES = {
    "fc": "fc.weight",
    "attn_norm": "blk.0.attn_norm.weight",
    "hidden_norm": "blk.0.attn_norm_2.weight",
    "wq": "blk.0.attn_q.weight",
    "wk": "blk.0.attn_k.weight",
    "wv": "blk.0.attn_v.weight",
    "wo": "blk.0.attn_output.weight",
    "ffn_norm": "blk.0.ffn_norm.weight",
    "w_gate": "blk.0.ffn_gate.weight",
    "w_up": "blk.0.ffn_up.weight",
    "w_down": "blk.0.ffn_down.weight",
    "output_norm": "output_norm.weight",
    "lm_head": "output.weight",
}

MATRIX_TYPES = {"f16": GGMLQuantizationType.F16, "f32": GGMLQuantizationType.F32,
                "q8_0": GGMLQuantizationType.Q8_0}


class TargetModel:
    """The target GGUF, memory-mapped: hyperparameters, tokenizer fields and the rows of
    token_embd / output the head shares or starts from."""

    def __init__(self, path: str):
        self.path = path
        self.reader = GGUFReader(path)
        self.arch = self.value("general.architecture")
        self.n_embd = int(self.value(f"{self.arch}.embedding_length"))
        self.n_layer = int(self.value(f"{self.arch}.block_count"))
        self.rope_base = float(self.value(f"{self.arch}.rope.freq_base", 10000.0))
        self.rms_eps = float(self.value(f"{self.arch}.attention.layer_norm_rms_epsilon", 1e-6))
        self.n_head = int(self.value(f"{self.arch}.attention.head_count"))
        self.n_head_kv = int(self.value(f"{self.arch}.attention.head_count_kv", self.n_head))
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.n_vocab = int(self.tensors["token_embd.weight"].shape[1])

    def value(self, key: str, default=None):
        f = self.reader.fields.get(key)
        if f is None:
            if default is None:
                raise KeyError(f"{self.path}: no {key}")
            return default
        return f.contents()

    def tokenizer_fields(self):
        return [f for name, f in self.reader.fields.items() if name.startswith("tokenizer.")]

    def rows(self, name: str, ids=None, chunk: int = 8192) -> np.ndarray:
        """Dequantized rows (float32 [len(ids), n_embd]) of a [n_vocab, n_embd] tensor."""
        t = self.tensors[name]
        ids = np.arange(int(t.shape[1])) if ids is None else np.asarray(ids, np.int64)
        out = np.empty((len(ids), int(t.shape[0])), np.float32)
        for i in range(0, len(ids), chunk):  # chunks bound the float32 temporaries
            sel = ids[i:i + chunk]
            out[i:i + len(sel)] = dequantize(np.asarray(t.data[sel]), t.tensor_type).reshape(len(sel), -1)
        return out

    def output_name(self) -> str:
        """The target's LM head: output.weight, or token_embd.weight when tied."""
        return "output.weight" if "output.weight" in self.tensors else "token_embd.weight"

    def vector(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else dequantize(np.asarray(t.data), t.tensor_type).reshape(-1)


def copy_tokenizer(writer: GGUFWriter, target: TargetModel) -> None:
    """Every tokenizer.* key, value for value: llama.cpp builds the draft's vocabulary from
    the head file, and kestrel checks that it equals the target's."""
    for f in target.tokenizer_fields():
        kind = f.types[0]
        if kind == GGUFValueType.ARRAY:
            sub = f.types[-1]
            if sub == GGUFValueType.STRING:  # raw bytes: no utf-8 round trip
                value = [bytes(f.parts[i]) for i in f.data]
            else:
                value = f.contents()
            writer.add_key_value(f.name, value, GGUFValueType.ARRAY, sub_type=sub)
        elif kind == GGUFValueType.STRING:
            writer.add_key_value(f.name, bytes(f.parts[-1]), GGUFValueType.STRING)
        else:
            writer.add_key_value(f.name, f.contents(), kind)


def encode_matrix(w: np.ndarray, kind: str):
    """(data, raw_dtype) of a matrix in the requested GGUF type. Q8_0 needs rows that are a
    multiple of its 32-element blocks; other rows fall back to F16."""
    qtype = MATRIX_TYPES[kind]
    if qtype == GGMLQuantizationType.Q8_0 and w.shape[-1] % 32 != 0:
        qtype = GGMLQuantizationType.F16
    if qtype == GGMLQuantizationType.F32:
        return w.astype(np.float32), None
    if qtype == GGMLQuantizationType.F16:
        return w.astype(np.float16), None
    return quantize(w.astype(np.float32), qtype), qtype


def write_head(path: str, weights: dict[str, np.ndarray], cfg, d2t: np.ndarray, target: TargetModel,
               matrix_type: str = "f16", note: str = "", context_length: int = 32768) -> None:
    """weights: Eagle3Head parameter name -> float32 array; cfg: HeadConfig."""
    tmp = path + ".tmp"
    w = GGUFWriter(tmp, ARCH)
    w.add_string("general.name", f"EAGLE-3 head for {os.path.basename(target.path)}")
    w.add_uint32(f"{ARCH}.context_length", context_length)
    w.add_uint32(f"{ARCH}.embedding_length", cfg.n_embd)
    w.add_uint32(f"{ARCH}.block_count", 1)
    w.add_uint32(f"{ARCH}.feed_forward_length", cfg.n_ff)
    w.add_uint32(f"{ARCH}.attention.head_count", cfg.n_head)
    w.add_uint32(f"{ARCH}.attention.head_count_kv", cfg.n_head_kv)
    # Explicit head size: llama.cpp would otherwise assume n_embd / n_head.
    w.add_uint32(f"{ARCH}.attention.key_length", cfg.head_dim)
    w.add_uint32(f"{ARCH}.attention.value_length", cfg.head_dim)
    w.add_float32(f"{ARCH}.attention.layer_norm_rms_epsilon", cfg.rms_eps)
    w.add_float32(f"{ARCH}.rope.freq_base", cfg.rope_base)
    w.add_uint32(f"{ARCH}.rope.dimension_count", cfg.head_dim)
    w.add_uint32(f"{ARCH}.vocab_size", cfg.n_vocab)
    w.add_key_value(f"{ARCH}.target_layers", [int(x) for x in cfg.target_layers],
                    GGUFValueType.ARRAY, sub_type=GGUFValueType.INT32)
    w.add_uint32(f"{ARCH}.target_hidden_size", cfg.target_n_embd)
    w.add_bool(f"{ARCH}.norm_before_residual", False)
    w.add_string("kestrel.eagle3.target_file", os.path.basename(target.path))
    w.add_string("kestrel.eagle3.train_note", note or "untrained")
    copy_tokenizer(w, target)

    for attr, name in TENSOR_NAMES.items():
        a = np.ascontiguousarray(weights[attr], dtype=np.float32)
        if a.ndim == 1:  # norms stay F32, as llama.cpp's converters write them
            w.add_tensor(name, a)
        else:
            data, raw = encode_matrix(a, matrix_type)
            w.add_tensor(name, data, raw_dtype=raw)
    # d2t holds ABSOLUTE target ids (llama.cpp scatters draft logit k to d2t[k]);
    # HF EAGLE-3 checkpoints store offsets (target - k) that its converter resolves.
    w.add_tensor("d2t", np.ascontiguousarray(d2t, dtype=np.int64), raw_dtype=GGMLQuantizationType.I64)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)  # never leave a half-written head under the real name


def read_head(path: str):
    """The head GGUF back as (HeadConfig, {Eagle3Head parameter: float32 array}, d2t):
    checks what was written, and lets tools run a head file in torch."""
    from head import HeadConfig

    r = GGUFReader(path)

    def kv(key, default=None):
        f = r.fields.get(f"{ARCH}.{key}")
        return default if f is None else f.contents()

    tensors = {t.name: t for t in r.tensors}
    weights = {}
    for attr, name in TENSOR_NAMES.items():
        t = tensors[name]
        shape = [int(x) for x in reversed(t.shape)]  # GGUF dims -> numpy (out, in)
        weights[attr] = dequantize(np.asarray(t.data), t.tensor_type).reshape(shape).astype(np.float32)
    d2t = np.asarray(tensors["d2t"].data).astype(np.int64)
    n_head = int(kv("attention.head_count"))
    cfg = HeadConfig(n_embd=int(kv("embedding_length")), target_n_embd=int(kv("target_hidden_size")),
                     target_layers=[int(x) for x in kv("target_layers")], n_vocab=int(kv("vocab_size")),
                     n_draft_vocab=len(d2t), n_head=n_head, n_head_kv=int(kv("attention.head_count_kv", n_head)),
                     head_dim=int(kv("attention.key_length", kv("embedding_length") // n_head)),
                     n_ff=int(kv("feed_forward_length")), rope_base=float(kv("rope.freq_base")),
                     rms_eps=float(kv("attention.layer_norm_rms_epsilon")))
    return cfg, weights, d2t
