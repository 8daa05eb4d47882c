#!/usr/bin/env python3
"""Writes the safetensors files Kiln's checkpoint tests and fuzzer read.

tests/data/torch_linear.safetensors is what a PyTorch user hands Kiln: the
state_dict of nn.Linear(3, 2) under torch.manual_seed(0), plus one tensor of
each other dtype Kiln has, with safetensors' own "pt" metadata. The files are
written by hand per the format spec (8-byte little-endian header length, JSON
header padded with spaces to 8 bytes, data sorted by dtype then name, as the
safetensors library lays it out), so the script needs only torch; when the
safetensors package is importable the bytes are checked against its
save_file. Prints the values test_checkpoint.c expects.

Usage: python3 tests/ref/make_safetensors_fixture.py   (from the repo root)
"""
import json
import os
import struct

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32",
          torch.int64: "I64", torch.bool: "BOOL"}
# safetensors' Rust Dtype enum order (of Kiln's five): its writer puts the
# largest first, then sorts by name
DTYPE_RANK = {"BOOL": 0, "I32": 1, "F32": 2, "F64": 3, "I64": 4}


def safetensors_bytes(tensors, metadata=None):
    """The file safetensors.torch.save_file would write for tensors."""
    order = sorted(tensors, key=lambda k: (-DTYPE_RANK[DTYPES[tensors[k].dtype]], k))
    header, data, at = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order:
        t = tensors[name].contiguous()
        raw = t.numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [at, at + len(raw)]}
        data += raw
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write(path, tensors, metadata=None):
    blob = safetensors_bytes(tensors, metadata)
    try:
        from safetensors.torch import save as st_save
    except ImportError:
        st_save = None
    if st_save is not None:
        assert st_save(tensors, metadata) == blob, f"{path}: differs from safetensors' bytes"
    with open(path, "wb") as f:
        f.write(blob)
    print(f"wrote {path} ({len(blob)} bytes{', same as safetensors' if st_save else ''})")


def main():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    linear = {
        "weight": lin.weight.detach(),
        "bias": lin.bias.detach(),
        "scale": torch.tensor([0.5, -1.25, 3.0], dtype=torch.float64),
        "counts": torch.tensor([[1, -2], [3, 2147483647]], dtype=torch.int32),
        "step": torch.tensor(9007199254740993, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }
    write("tests/data/torch_linear.safetensors", linear, {"format": "pt"})
    print("weight", [f"{v:.9g}f" for v in lin.weight.detach().flatten().tolist()])
    print("bias", [f"{v:.9g}f" for v in lin.bias.detach().tolist()])

    # The fuzzer's module: w F32 [2, 3], b F64 [3], n I64 [], mask BOOL [4].
    fuzz = {
        "w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "b": torch.tensor([1.5, -2.0, 0.25], dtype=torch.float64),
        "n": torch.tensor(42),
        "mask": torch.tensor([True, False, False, True]),
    }
    d = "tests/fuzz/corpus_safetensors"
    write(f"{d}/all.safetensors", fuzz, {"format": "kiln", "kiln.run": "7"})
    write(f"{d}/some.safetensors", {"w": fuzz["w"], "n": fuzz["n"]}, {"format": "pt"})
    write(f"{d}/none.safetensors", {})


if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    main()
