#!/usr/bin/python3
"""Reference values for tests/unit/test_optim.c, from PyTorch's optimizers.

Writes tests/data/optim_table.txt: for each configuration, the loss of every
run and every param (and optimizer state tensor) after the last run, as
float32 values printed with 9 significant digits. The model, data and initial
params are defined here and in test_optim.c identically (simple closed forms,
so neither side copies the other's random numbers).

Run with Debian's python3-torch (1.13): /usr/bin/python3 tests/ref/optim_table.py
"""
import math
import sys

import torch

torch.set_default_dtype(torch.float32)


def init(n, a, b):
    # element i: sin(a * i + b) / 2, rounded to float32 (test_optim.c: same)
    return torch.tensor([math.sin(a * i + b) / 2 for i in range(n)], dtype=torch.float32)


def batch(k):
    x = init(4 * 3, 0.7, 0.3 + k).reshape(4, 3)
    y = init(4 * 2, 1.1, 0.5 + k).reshape(4, 2)
    labels = torch.tensor([(i + k) % 2 for i in range(4)], dtype=torch.int64)
    return x, y, labels


def model():
    w1 = init(5 * 3, 0.37, 0.1).reshape(5, 3).requires_grad_()
    b1 = init(5, 0.53, 0.2).requires_grad_()
    w2 = init(2 * 5, 0.29, 0.3).reshape(2, 5).requires_grad_()
    b2 = init(2, 0.61, 0.4).requires_grad_()
    return [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)]


def forward(params, x):
    p = dict(params)
    h = torch.relu(x @ p["w1"].T + p["b1"])
    return h @ p["w2"].T + p["b2"]


# name, optimizer constructor, loss kind, runs, micro-batches per update, lr change
CONFIGS = [
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1), "mse", 5, 1),
    ("sgd_momentum", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), "mse", 5, 1),
    ("sgd_dampening_wd",
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.25, weight_decay=0.01),
     "mse", 5, 1),
    ("sgd_nesterov",
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02),
     "ce", 5, 1),
    ("adam", lambda ps: torch.optim.Adam(ps, lr=0.01), "mse", 5, 1),
    ("adam_wd", lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6,
                                            weight_decay=0.1), "ce", 5, 1),
    ("adamw", lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1), "mse", 5, 1),
    ("sgd_accumulate", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), "mse", 10, 2),
    ("adam_accumulate", lambda ps: torch.optim.Adam(ps, lr=0.01), "ce", 9, 3),
    ("adam_lr_change", lambda ps: torch.optim.Adam(ps, lr=0.01), "mse", 5, 1),
    # param groups (no weight decay for the biases) and clip_grad_norm_ before each step
    ("adamw_groups_clip", lambda ps: torch.optim.AdamW(
        [{"params": [ps[0], ps[2]], "weight_decay": 0.1},
         {"params": [ps[1], ps[3]], "weight_decay": 0.0}], lr=0.02), "ce", 5, 1),
    ("sgd_clip_accumulate", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), "mse", 10, 2),
]
# max_norm of torch.nn.utils.clip_grad_norm_ before opt.step() (test_optim.c: opt.max_grad_norm)
CLIP = {"adamw_groups_clip": 0.5, "sgd_clip_accumulate": 0.05}


def fmt(t):
    return " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())


def main(out):
    for name, make, loss_kind, runs, k in CONFIGS:
        params = model()
        opt = make([p for _, p in params])
        losses = []
        for r in range(runs):
            if name == "adam_lr_change" and r == 2:
                for group in opt.param_groups:
                    group["lr"] = 0.05
            x, y, labels = batch(r % 3)
            out_ = forward(params, x)
            if loss_kind == "mse":
                loss = torch.nn.functional.mse_loss(out_, y)
            else:
                loss = torch.nn.functional.cross_entropy(out_, labels)
            loss.backward()
            losses.append(loss.item())
            if (r + 1) % k == 0:
                if name in CLIP:
                    torch.nn.utils.clip_grad_norm_([p for _, p in params], CLIP[name])
                opt.step()
                opt.zero_grad()
        out.write("%s loss %s\n" % (name, " ".join("%.9g" % v for v in losses)))
        for pname, p in params:
            out.write("%s %s %s\n" % (name, pname, fmt(p)))
            st = opt.state[p]
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                if key in st and st[key] is not None:
                    out.write("%s %s.%s %s\n" % (name, pname, key, fmt(st[key])))
        step = max((float(opt.state[p]["step"]) for _, p in params if "step" in opt.state[p]),
                   default=float(sum(1 for r in range(runs) if (r + 1) % k == 0)))
        out.write("%s train.step %.9g\n" % (name, step))


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "tests/data/optim_table.txt", "w") as f:
        f.write("# made by tests/ref/optim_table.py with torch %s; see test_optim.c\n"
                % torch.__version__)
        main(f)
