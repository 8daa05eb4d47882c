#!/usr/bin/python3
"""Reference values for tests/unit/test_layers.c, from PyTorch (float64).

Writes tests/data/layers_table.txt: one line per case, "name: v v v ...", for
the output y of each conv2d / pooling / normalization / attention case and
the gradients of sum(y * ct) with respect to its inputs (x, w, b: the first,
second and third), and for batch norm in training the running statistics
after one step. Inputs are closed forms defined here and in test_layers.c
identically:
  x[i]  = ((37 i) mod 101 - 50) / 64     (distinct within any window: no ties)
  w[i]  = ((53 i) mod 97 - 48) / 64
  b[i]  = (i mod 7 - 3) / 8             (the third input, any shape)
  ct[i] = ((29 i) mod 89 - 44) / 32
Running statistics start at rm[i] = (i mod 5 - 2) / 4, rv[i] = 1/2 + i / 8.
Attention is written out (softmax(q k^T scale + mask) v): torch 1.13 has no
F.scaled_dot_product_attention.
Run with Debian's python3-torch (1.13):
  /usr/bin/python3 tests/ref/layers_table.py tests/data/layers_table.txt
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


def bs(shape):
    if isinstance(shape, int):
        shape = (shape,)
    n = 1
    for d in shape:
        n *= d
    return torch.tensor([(i % 7 - 3) / 8.0 for i in range(n)]).reshape(shape)


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
# name, x shape, w shape, bias, stride, padding, dilation, groups (F.conv1d)
CONV1DS = [
    ("conv1d_basic", (2, 3, 9), (4, 3, 3), True, 1, 0, 1, 1),
    ("conv1d_strided_groups", (2, 4, 11), (6, 2, 4), False, 2, 2, 2, 2),
    ("conv1d_unbatched", (3, 7), (2, 3, 2), True, 1, 1, 1, 1),
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
    for conv, cases in ((F.conv2d, CONVS), (F.conv1d, CONV1DS)):
        for name, xsh, wsh, bias, stride, pad, dil, groups in cases:
            x = xs(xsh).requires_grad_()
            w = ws(wsh).requires_grad_()
            b = bs(wsh[0]).requires_grad_() if bias else None
            y = conv(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)
            (y * cts(y.shape)).sum().backward()
            line(out, name + ".y", y.detach())
            line(out, name + ".dx", x.grad)
            line(out, name + ".dw", w.grad)
            if bias:
                line(out, name + ".db", b.grad)
    norms_and_attention(out)
    losses(out)
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


# name, x shape, training, momentum, eps
BATCHNORMS = [
    ("bn_train", (4, 3, 2, 3), True, 0.1, 1e-5),
    ("bn_train_2d", (5, 4), True, 0.3, 1e-3),
    ("bn_eval", (2, 3, 2, 2), False, 0.1, 1e-5),
]
# name, x shape, groups, eps
GROUPNORMS = [
    ("gn", (2, 6, 3, 2), 3, 1e-5),
    ("gn_per_channel", (2, 4, 5), 4, 1e-3),
]
# name, q shape, k shape, v shape, mask kind, scale
ATTENTION = [
    ("sdpa", (2, 2, 4, 3), (2, 2, 5, 3), (2, 2, 5, 4), None, 0.0),
    ("sdpa_causal", (2, 3, 4, 2), (2, 3, 4, 2), (2, 3, 4, 3), "causal", 0.0),
    ("sdpa_mask_scale", (3, 4, 3), (3, 5, 3), (3, 5, 2), "mask", 0.5),
]


def attn_mask(l, s):
    # attend where (3 i + 2 j) mod 5 != 0, and always to j = 0 (no row fully masked)
    return torch.tensor([[(3 * i + 2 * j) % 5 != 0 or j == 0 for j in range(s)] for i in range(l)])


# name, logits shape, labels, ignore_index, label_smoothing
CROSS_ENTROPY = [
    ("ce_smooth", (4, 5), [1, -100, 4, 0], -100, 0.1),
    ("ce_ignore_smooth", (5, 3), [2, 0, 1, 2, 0], 2, 0.25),
]


def losses(out):
    for name, xsh, labels, ignore, eps in CROSS_ENTROPY:
        x = xs(xsh).requires_grad_()
        y = F.cross_entropy(x, torch.tensor(labels), ignore_index=ignore, label_smoothing=eps)
        (y * cts(y.shape)).sum().backward()
        line(out, name + ".y", y.detach())
        line(out, name + ".dx", x.grad)


def norms_and_attention(out):
    for name, xsh, training, mom, eps in BATCHNORMS:
        c = xsh[1]
        x = xs(xsh).requires_grad_()
        w = ws((c,)).requires_grad_()
        b = bs(c).requires_grad_()
        rm = torch.tensor([(i % 5 - 2) / 4.0 for i in range(c)])
        rv = torch.tensor([0.5 + i / 8.0 for i in range(c)])
        y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=mom, eps=eps)
        (y * cts(y.shape)).sum().backward()
        for part, t in (("y", y.detach()), ("dx", x.grad), ("dw", w.grad), ("db", b.grad)):
            line(out, name + "." + part, t)
        if training:
            line(out, name + ".new_rm", rm)
            line(out, name + ".new_rv", rv)
    for name, xsh, groups, eps in GROUPNORMS:
        c = xsh[1]
        x = xs(xsh).requires_grad_()
        w = ws((c,)).requires_grad_()
        b = bs(c).requires_grad_()
        y = F.group_norm(x, groups, w, b, eps)
        (y * cts(y.shape)).sum().backward()
        for part, t in (("y", y.detach()), ("dx", x.grad), ("dw", w.grad), ("db", b.grad)):
            line(out, name + "." + part, t)
    for name, qsh, ksh, vsh, kind, scale in ATTENTION:
        q = xs(qsh).requires_grad_()
        k = ws(ksh).requires_grad_()
        v = bs(vsh).requires_grad_()
        sc = scale or 1 / qsh[-1] ** 0.5
        scores = q @ k.transpose(-2, -1) * sc
        l, s = qsh[-2], ksh[-2]
        if kind == "causal":
            m = torch.ones(l, s, dtype=torch.bool).tril()
        elif kind == "mask":
            m = attn_mask(l, s)
        else:
            m = None
        if m is not None:
            scores = scores.masked_fill(~m, float("-inf"))
        y = torch.softmax(scores, -1) @ v
        (y * cts(y.shape)).sum().backward()
        for part, t in (("y", y.detach()), ("dx", q.grad), ("dw", k.grad), ("db", v.grad)):
            line(out, name + "." + part, t)


main()
