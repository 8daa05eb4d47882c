#!/usr/bin/python3
"""Reference values for tests/unit/test_conv.c, from PyTorch (float64).

Writes tests/data/conv_table.txt: one line per case, "name: v v v ...", for
the output y of each conv2d / pooling case and, for conv2d and pooling, the
gradients of sum(y * ct) with respect to x (and w, b for conv2d). Inputs are
closed forms defined here and in test_conv.c identically:
  x[i]  = ((37 i) mod 101 - 50) / 64     (distinct within any window: no ties)
  w[i]  = ((53 i) mod 97 - 48) / 64
  b[i]  = (i mod 7 - 3) / 8
  ct[i] = ((29 i) mod 89 - 44) / 32
Run with Debian's python3-torch (1.13): /usr/bin/python3 tests/ref/conv_table.py
"""
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def form(shape, a, m, c, d):
    n = 1
    for s in shape:
        n *= s
    return torch.tensor([((a * i) % m - c) / d for i in range(n)]).reshape(shape)


def xs(shape):
    return form(shape, 37, 101, 50, 64.0)


def ws(shape):
    return form(shape, 53, 97, 48, 64.0)


def bs(n):
    return torch.tensor([(i % 7 - 3) / 8.0 for i in range(n)])


def cts(shape):
    return form(shape, 29, 89, 44, 32.0)


# name, x shape, w shape, bias, stride, padding, dilation, groups (test_conv.c: same table)
CONVS = [
    ("conv_basic", (2, 3, 5, 5), (4, 3, 3, 3), True, (1, 1), (0, 0), (1, 1), 1),
    ("conv_groups_stride_pad", (2, 4, 7, 6), (6, 2, 3, 2), True, (2, 2), (1, 1), (1, 1), 2),
    ("conv_dilated", (1, 2, 8, 8), (3, 2, 3, 3), False, (1, 1), (2, 2), (2, 2), 1),
    ("conv_unbatched_1x1", (3, 4, 4), (2, 3, 1, 1), True, (2, 1), (0, 1), (1, 1), 1),
    ("conv_depthwise", (1, 4, 5, 5), (4, 1, 3, 3), False, (1, 1), (1, 1), (1, 1), 4),
]
# name, kind, x shape, kernel, stride, padding
POOLS = [
    ("max_tiled", "max", (2, 3, 6, 6), 2, 0, 0),
    ("max_tiled_floor", "max", (1, 2, 7, 5), 2, 0, 0),
    ("max_padded", "max", (1, 2, 7, 7), 3, 2, 1),
    ("max_overlap_unbatched", "max", (2, 5, 5), 2, 1, 0),
    ("avg_tiled", "avg", (2, 3, 6, 6), 3, 0, 0),
    ("avg_padded", "avg", (1, 2, 7, 7), 3, 2, 1),
    ("avg_overlap", "avg", (1, 2, 5, 5), 2, 1, 0),
]
# name, x shape, out_h, out_w
ADAPTIVE = [
    ("adaptive_global", (2, 3, 6, 5), 1, 1),
    ("adaptive_uneven", (1, 2, 7, 5), 3, 2),
    ("adaptive_divisible", (1, 2, 8, 8), 4, 2),
]


def line(out, name, t):
    out.write(name + ":" + "".join(" %.17g" % v for v in t.reshape(-1).tolist()) + "\n")


def main():
    out = sys.stdout if len(sys.argv) < 2 else open(sys.argv[1], "w")
    for name, xsh, wsh, bias, stride, pad, dil, groups in CONVS:
        x = xs(xsh).requires_grad_()
        w = ws(wsh).requires_grad_()
        b = bs(wsh[0]).requires_grad_() if bias else None
        y = F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)
        (y * cts(y.shape)).sum().backward()
        line(out, name + ".y", y.detach())
        line(out, name + ".dx", x.grad)
        line(out, name + ".dw", w.grad)
        if bias:
            line(out, name + ".db", b.grad)
    for name, kind, xsh, k, s, p in POOLS:
        x = xs(xsh).requires_grad_()
        f = F.max_pool2d if kind == "max" else F.avg_pool2d
        y = f(x, k, stride=s or None, padding=p)
        (y * cts(y.shape)).sum().backward()
        line(out, name + ".y", y.detach())
        line(out, name + ".dx", x.grad)
    for name, xsh, oh, ow in ADAPTIVE:
        x = xs(xsh).requires_grad_()
        y = F.adaptive_avg_pool2d(x, (oh, ow))
        (y * cts(y.shape)).sum().backward()
        line(out, name + ".y", y.detach())
        line(out, name + ".dx", x.grad)


main()
