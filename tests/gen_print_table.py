#!/usr/bin/env python3
"""Generates tests/data/print_cases.txt: tensors and the repr() PyTorch gives them.

tests/unit/test_format.c formats every case with kiln_format and compares the
text byte for byte. The expected text comes from PyTorch only, never from Kiln.

    python3 tests/gen_print_table.py            # rewrites tests/data/print_cases.txt

File format (one field per line, cases separated by "case" lines):
    torch <version>
    case <n> <label>
    dtype f32|f64|i32|i64|bool
    shape <d0> <d1> ...          (nothing after "shape" for a 0-d tensor)
    data <v0> <v1> ...           (f32/f64: hex bit patterns; i32/i64: decimal; bool: 0/1)
    repr <text>                  (backslash escapes: \\n newline, \\\\ backslash)
"""
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "print_cases.txt")

DTYPES = {
    "f32": torch.float32,
    "f64": torch.float64,
    "i32": torch.int32,
    "i64": torch.int64,
    "bool": torch.bool,
}

cases = []


def add(label, t):
    assert t.dtype in DTYPES.values(), t.dtype
    cases.append((label, t.contiguous()))


def tens(label, values, dt="f32", shape=None):
    t = torch.tensor(values, dtype=DTYPES[dt])
    if shape is not None:
        t = t.reshape(shape)
    add(label, t)


def encode(t):
    name = [k for k, v in DTYPES.items() if v == t.dtype][0]
    a = t.numpy().reshape(-1)
    if name == "f32":
        vals = ["%08x" % v for v in a.view(np.uint32)]
    elif name == "f64":
        vals = ["%016x" % v for v in a.view(np.uint64)]
    elif name == "bool":
        vals = ["1" if v else "0" for v in a]
    else:
        vals = [str(int(v)) for v in a]
    return name, vals


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def build():
    g = torch.Generator().manual_seed(20240611)

    def randn(*shape, dt=torch.float64):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dt)

    def randint(lo, hi, *shape, dt=torch.int64):
        return torch.randint(lo, hi, shape, generator=g, dtype=torch.int64).to(dt)

    # ---- 0-d tensors
    for dt in ("f32", "f64"):
        for v in [4.0, 4.5, 0.0, -0.0, -7.0, 3.14159265, 1e-5, 1e-4, 9.99e-5, 1e8, 1e8 + 1,
                  123456789.0, 1e10, -1e-10, 1e300 if dt == "f64" else 1e30, float("nan"),
                  float("inf"), float("-inf"), 0.33333, 99999.5, -2.5e-3, 5e-324 if dt == "f64"
                  else 1e-45]:
            tens("scalar %s %r" % (dt, v), v, dt)
    for dt in ("i32", "i64"):
        for v in [4, 0, -7, 123456789, 2**31 - 1, -2**31]:
            tens("scalar %s %d" % (dt, v), v, dt)
    tens("scalar i64 max", 2**63 - 1, "i64")
    tens("scalar i64 min", -2**63, "i64")
    tens("scalar bool true", True, "bool")
    tens("scalar bool false", False, "bool")

    # ---- the tutorials' tensors
    tens("arange 10", list(range(10)), "i64")
    add("ones 3x2", torch.ones(3, 2))
    add("zeros 3x2", torch.zeros(3, 2))
    add("linspace 0 1 5", torch.linspace(0, 1, 5))
    tens("int 3x2", [[1, 2], [3, 4], [5, 6]], "i64")
    add("arange 1..9 1x3x3", torch.arange(1, 10).reshape(1, 3, 3))
    add("ones 3x2 f64", torch.ones(3, 2, dtype=torch.float64))
    add("ones 5 i32", torch.ones(5, dtype=torch.int32))
    add("rand 3x2", torch.rand(3, 2, generator=g))
    add("rand 5x3", torch.rand(5, 3, generator=g))
    add("randn 2x3", torch.randn(2, 3, generator=g))
    tens("1-d float", [1.0, 2.0, 3.0])
    tens("1-d mixed", [1.5, 2.0, -3.25])
    tens("bool vec", [True, False, True], "bool")
    tens("bool 2x2", [[True, True], [True, True]], "bool")
    add("eye-ish", torch.eye(4))
    add("arange f32", torch.arange(0, 5, 0.5))
    add("arange f64", torch.arange(0, 5, 0.5, dtype=torch.float64))
    add("linspace -10 10 steps 7", torch.linspace(-10, 10, 7))
    add("linspace 0 1 steps 11 f64", torch.linspace(0, 1, 11, dtype=torch.float64))

    # ---- int_mode / sci_mode boundaries (ratio 1000, max 1e8, min 1e-4)
    for dt in ("f32", "f64"):
        for vals in [
            [1.0, 1000.0], [1.0, 1001.0], [1.0, 1000.5], [0.5, 500.0], [0.5, 500.5],
            [1e-4, 0.05], [1e-4, 0.1], [1e-4, 0.2], [9.9999e-5, 0.05], [1.0001e-4, 0.05],
            [1e8, 1.0], [1e8, 100000.0], [1e8 + 8, 1e6], [100000000.5, 1e6],
            [99999999.0, 99999.0], [12345678.0, 2.0], [1e8, 2e8], [2.0, 4.0, 1e8],
            [0.001, 1.0], [0.001, 1.0001], [0.0012, 1.2], [1.0, 999.999], [0.1, 100.0],
            [0.1, 100.1], [-1.0, 1000.0], [-1.0, -1001.0], [1e-5], [1e-3], [1e9], [1e-20, 1e20],
            [3.0, 0.0, -0.0], [-0.0], [0.0, 0.0], [-0.0, 1.5], [-0.0, 2e-6], [-0.0, 1e9],
            [0.00005, 0.0], [123.456, 0.01], [0.99995, 0.5], [9.99995, 1.0], [0.000149999],
            [1.23456789e-7, 5.5e-8], [6.02214076e23, 1.0], [1e15, 3.0], [65504.0, 1.0],
            [-1e-4, 0.5], [2.5, 3.5, 4.5], [0.125, 0.375], [1.00005, 2.00015],
        ]:
            tens("bounds %s %r" % (dt, vals), vals, dt)
    for dt in ("f32", "f64"):
        for n in range(0, 13):
            tens("pow10 %s %d" % (dt, n), [10.0 ** -n, 1.0], dt)
            tens("pow10 big %s %d" % (dt, n), [10.0 ** n, 3.0], dt)
            tens("pow10 int %s %d" % (dt, n), [10.0 ** n, 1.0, 7.0], dt)

    # ---- nan / inf mixes
    nan, inf = float("nan"), float("inf")
    for dt in ("f32", "f64"):
        for vals in [
            [nan], [inf], [-inf], [nan, inf, -inf], [nan, 1.0], [nan, 1.5], [inf, 2.0],
            [-inf, 2.25], [nan, 0.0], [1e-5, nan], [1e9, -inf], [nan, 1e-5, 1.0],
            [1.0, 2.0, inf, 1000.0], [1.0, 2.0, nan, 12345.0], [-inf, -0.0, 0.0, inf],
            [[nan, 1.0], [2.0, inf]], [[1.5, -inf], [nan, 100.25]], [0.0, -0.0, nan],
            [12345678.0, nan, -inf], [1e10, nan], [-1e10, inf, 1.0],
        ]:
            tens("nonfinite %s %r" % (dt, vals), vals, dt)

    # ---- integers and bools
    for dt in ("i32", "i64"):
        tens("ints neg %s" % dt, [-1, 0, 1, -100, 1000], dt)
        tens("ints width %s" % dt, [[1, -22], [333, 4444]], dt)
        add("ints random 4x5 %s" % dt, randint(-1000, 1000, 4, 5, dt=DTYPES[dt]))
        add("ints random 30 %s" % dt, randint(-10**6, 10**6, 30, dt=DTYPES[dt]))
        add("ints random 2x3x4 %s" % dt, randint(-9, 10, 2, 3, 4, dt=DTYPES[dt]))
        add("ints random 2x2x2x3 %s" % dt, randint(0, 100, 2, 2, 2, 3, dt=DTYPES[dt]))
        add("ints long row %s" % dt, randint(0, 10, 1, 50, dt=DTYPES[dt]))
    tens("i32 extremes", [2**31 - 1, -2**31, 0], "i32")
    tens("i64 extremes", [2**63 - 1, -2**63, 0], "i64")
    add("i64 wide random", randint(-2**62, 2**62, 7, dt=torch.int64))
    for shape in [(7,), (2, 3), (3, 1, 4), (2, 2, 2, 2), (30,), (1, 1), (5, 17)]:
        add("bool random %r" % (shape,), torch.rand(*shape, generator=g) > 0.5)
    add("bool all true 3", torch.ones(3, dtype=torch.bool))
    add("bool all false 20", torch.zeros(20, dtype=torch.bool))

    # ---- random floats at many scales, ranks 1-4
    shapes = [(1,), (5,), (13,), (1, 1), (2, 3), (4, 4), (3, 7), (2, 3, 4), (1, 2, 1),
              (2, 1, 3, 2), (2, 2, 2, 2), (3, 1, 1, 5)]
    scales = [1e-9, 1e-5, 1e-3, 0.1, 1.0, 10.0, 1234.5, 1e6, 1e9, 1e20]
    for dt in ("f32", "f64"):
        for i, shape in enumerate(shapes):
            for j, sc in enumerate(scales):
                if (i + j) % 3 and len(shape) > 1:
                    continue
                add("randn %s %r x %g" % (dt, shape, sc), randn(*shape, dt=DTYPES[dt]) * sc)
        for shape in [(6,), (3, 4), (2, 3, 2)]:
            add("rounded %s %r" % (dt, shape), (randn(*shape) * 100).round().to(DTYPES[dt]))
            add("halves %s %r" % (dt, shape), ((randn(*shape) * 20).round() / 2).to(DTYPES[dt]))
            add("rand %s %r" % (dt, shape), torch.rand(*shape, generator=g, dtype=DTYPES[dt]))
            add("exp spread %s %r" % (dt, shape),
                torch.exp(randn(*shape) * 8).to(DTYPES[dt]))

    # ---- widths forcing line wraps
    for dt in ("f32", "f64"):
        for n in [8, 9, 10, 11, 12, 20, 25, 40]:
            add("wrap 1-d %s %d" % (dt, n), (randn(n) * 1000).to(DTYPES[dt]))
        add("wrap 2-d %s" % dt, (randn(3, 15) * 100).to(DTYPES[dt]))
        add("wrap 3-d %s" % dt, (randn(2, 2, 14)).to(DTYPES[dt]))
        add("wrap sci %s" % dt, (randn(2, 10) * 1e12).to(DTYPES[dt]))
        add("wrap int-mode %s" % dt, torch.arange(0, 60, dtype=DTYPES[dt]))
        add("wrap int-mode 2-d %s" % dt, torch.arange(0, 60, dtype=DTYPES[dt]).reshape(2, 30) * 37)
    for n in [13, 14, 26, 27, 40]:
        add("wrap ints %d" % n, torch.arange(1000, 1000 + n))
    add("wrap i32 long", torch.arange(-50, 50, dtype=torch.int32))
    add("wrap bool long", torch.rand(45, generator=g) > 0.3)

    # ---- suffix placement (f64 / i32 dtype suffix, wrapping to a new line)
    for dt in ("f64", "i32"):
        for n in range(1, 26):
            val = 1.5 if dt == "f64" else 7
            add("suffix %s len %d" % (dt, n), torch.full((n,), val, dtype=DTYPES[dt]))
        for n in range(1, 14):
            add("suffix 2-d %s %d" % (dt, n), torch.ones(2, n, dtype=DTYPES[dt]) * 3)
        for w in [1, 10, 100, 10000, 10**7]:
            add("suffix width %s %d" % (dt, w),
                (torch.arange(0, 9, dtype=DTYPES[dt]) * w))
    for n in range(5, 12):
        add("suffix f64 neg %d" % n, -torch.arange(1, n + 1, dtype=torch.float64) / 3)
        add("suffix f64 sci %d" % n, torch.arange(1, n + 1, dtype=torch.float64) * 1e-7)

    # ---- summarization (> 1000 elements)
    for dt in ("f32", "f64", "i32", "i64"):
        add("summ 1-d 1001 %s" % dt, torch.arange(0, 1001, dtype=DTYPES[dt]))
        add("summ 1-d 2000 random %s" % dt, (randn(2000) * 50).to(DTYPES[dt]))
        add("summ 2-d 40x30 %s" % dt, (randn(40, 30) * 3).to(DTYPES[dt]))
        add("summ 3-d 11x11x11 %s" % dt, torch.arange(0, 1331, dtype=DTYPES[dt]).reshape(11, 11, 11))
    add("summ 1-d 1000 (not summarized)", torch.arange(0, 1000))
    add("summ 2-d 3x400", randn(3, 400, dt=torch.float32))
    add("summ 2-d 400x3", randn(400, 3, dt=torch.float32))
    add("summ 2-d 1001x1", torch.arange(0, 1001.0).reshape(1001, 1))
    add("summ 2-d 7x150", torch.arange(0, 1050.0).reshape(7, 150) / 7)
    add("summ 2-d 6x200", torch.arange(0, 1200.0).reshape(6, 200))
    add("summ 3-d 2x30x30", randn(2, 30, 30, dt=torch.float32))
    add("summ 4-d 6x7x8x9", randn(6, 7, 8, 9, dt=torch.float32) * 100)
    add("summ 4-d 7x7x7x7 f64", randn(7, 7, 7, 7))
    add("summ hidden small", torch.cat([torch.full((500,), 1e-6), torch.full((501,), 1.0)]))
    add("summ hidden nan", torch.cat([torch.ones(3), torch.full((995,), float("nan")), torch.ones(3) * 2.5]))
    add("summ bool", torch.rand(33, 34, generator=g) > 0.5)
    add("summ i64 wide", randint(-10**9, 10**9, 50, 50))
    big = torch.arange(0, 1002.0)
    big[500] = 1e12
    add("summ 1-d hidden huge", big)
    big = torch.arange(0, 2000.0).reshape(40, 50)
    big[1, 3] = 0.5
    add("summ 2-d visible fraction", big)

    # ---- size-0 dims
    for dt in DTYPES:
        for shape in [(0,), (0, 3), (3, 0), (2, 0, 4), (0, 0), (1, 0, 1, 2)]:
            add("empty %s %r" % (dt, shape), torch.zeros(shape, dtype=DTYPES[dt]))

    # ---- ranks 3 and 4, small and structured
    for dt in DTYPES:
        t = torch.arange(0, 24).reshape(2, 3, 4)
        add("arange 2x3x4 %s" % dt, t.to(DTYPES[dt]) if dt != "bool" else t % 3 == 0)
        t = torch.arange(0, 16).reshape(2, 2, 2, 2)
        add("arange 2x2x2x2 %s" % dt, t.to(DTYPES[dt]) if dt != "bool" else t % 2 == 0)
        add("ones 1x1x1 %s" % dt, torch.ones(1, 1, 1, dtype=DTYPES[dt]))
        add("ones 1x1x1x1 %s" % dt, torch.ones(1, 1, 1, 1, dtype=DTYPES[dt]))
    add("3-d negative fractions", torch.arange(-12, 12).reshape(2, 3, 4) / 8)
    add("4-d f64 fractions", torch.arange(-12, 12, dtype=torch.float64).reshape(2, 3, 2, 2) / 7)


def main():
    build()
    lines = ["torch %s" % torch.__version__]
    for i, (label, t) in enumerate(cases):
        name, vals = encode(t)
        lines.append("case %d %s" % (i, label))
        lines.append("dtype " + name)
        lines.append(("shape " + " ".join(str(d) for d in t.shape)).rstrip())
        lines.append(("data " + " ".join(vals)).rstrip())
        lines.append("repr " + escape(repr(t)))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d cases to %s" % (len(cases), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
