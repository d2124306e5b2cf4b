#!/usr/bin/env python3
"""Writes the GGUF fuzz seed corpus (fuzz/corpus/gguf/): a few small valid files
built field by field from the format description, independently of the C++
writer. Files have no .gguf suffix (the repository ignores *.gguf).

Usage: fuzz/make_gguf_corpus.py [out_dir]
"""
import os
import random
import struct
import sys

# GGUF value type ids
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
              F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# tensor type id -> (block size, bytes per block)
DTYPES = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20),
          "q8_0": (8, 32, 34), "q4_k": (12, 256, 144), "q6_k": (14, 256, 210), "i32": (26, 1, 4)}


def gguf_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value_bytes(vtype, v):
    if vtype == STRING:
        return gguf_string(v)
    if vtype == ARRAY:
        elem, items = v
        out = struct.pack("<IQ", elem, len(items))
        return out + b"".join(value_bytes(elem, x) for x in items)
    return struct.pack(SCALAR_FMT[vtype], v)


def gguf_file(kvs, tensors, version=3, alignment=32, rng=None):
    """kvs: [(key, type, value)], tensors: [(name, dtype, ne)]."""
    rng = rng or random.Random(0)
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, v in kvs:
        head += gguf_string(key) + struct.pack("<I", vtype) + value_bytes(vtype, v)
    data = b""
    for name, dtype, ne in tensors:
        type_id, block, block_bytes = DTYPES[dtype]
        rows = 1
        for d in ne[1:]:
            rows *= d
        nbytes = ne[0] // block * block_bytes * rows
        head += gguf_string(name) + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", type_id, len(data))
        data += bytes(rng.randrange(256) for _ in range(nbytes))
        data += b"\0" * (-len(data) % alignment)
    head += b"\0" * (-len(head) % alignment)
    return head + data


def seeds():
    every_scalar = [("u8", U8, 255), ("i8", I8, -128), ("u16", U16, 65535), ("i16", I16, -32768),
                    ("u32", U32, 2**32 - 1), ("i32", I32, -2**31), ("f32", F32, 0.5), ("bool", BOOL, True),
                    ("str", STRING, "hello"), ("u64", U64, 2**64 - 1), ("i64", I64, -2**63),
                    ("f64", F64, 1e-300)]
    arrays = [("arr.%d" % t, ARRAY, (t, [v, v])) for (_, t, v) in every_scalar]
    nested = [("arr.nested", ARRAY, (ARRAY, [(STRING, ["a", "bc"]), (U8, []), (ARRAY, [(I32, [1, -1])])]))]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(97, 120)]
    llama = [("general.architecture", STRING, "llama"), ("general.name", STRING, "seed"),
             ("llama.block_count", U32, 1), ("llama.embedding_length", U32, 64),
             ("llama.attention.head_count", U32, 4), ("llama.rope.freq_base", F32, 10000.0),
             ("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
             ("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3, 3] + [1] * (len(tokens) - 3))),
             ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b", "c d"])),
             ("tokenizer.ggml.bos_token_id", U32, 1)]
    quant_tensors = [("f32.vec", "f32", [8]), ("f16.mat", "f16", [4, 3]), ("q4_0.mat", "q4_0", [32, 2]),
                     ("q4_1.mat", "q4_1", [64, 1]), ("q8_0.3d", "q8_0", [32, 2, 2]), ("q4_k.mat", "q4_k", [256, 1]),
                     ("q6_k.4d", "q6_k", [256, 1, 1, 1]), ("i32.vec", "i32", [3]), ("empty", "f32", [0, 2])]
    return {
        "empty_header": gguf_file([], []),
        "every_value_type": gguf_file(every_scalar + arrays + nested, []),
        "tensor_types": gguf_file([("general.architecture", STRING, "llama")], quant_tensors),
        "aligned_64": gguf_file([("general.alignment", U32, 64)] + llama[:3],
                                [("a", "f32", [4]), ("b", "q8_0", [32])], alignment=64),
        "version2_llama": gguf_file(llama, [("token_embd.weight", "q4_0", [64, 4]),
                                            ("output_norm.weight", "f32", [64])], version=2),
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "gguf")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print("%s: %d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()
