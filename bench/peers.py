#!/usr/bin/env python3
"""peers.py - the peers of bench/cpu.c: the same cases in PyTorch eager and numpy.

    peers.py CASE [N] [--threads T] [--peer torch|numpy|compile]

Prints one line per case, as bench_cpu does:
    RESULT <case> <seconds> <rate> <unit>
with the best time of its runs. torch.compile is used when a PyTorch 2.x is
importable (bench/.venv, created by hand: it pulls several GB); otherwise it
prints "NOTE ... not installed". Set OPENBLAS_CORETYPE before starting this
script to choose numpy's OpenBLAS kernels (bench/cpu.sh asks for SkylakeX).
"""
import sys
import time


def best_of(fn, runs):
    fn()  # warm-up
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def train_step_time(model, opt, x, y, maybe, clip=None):
    """Best time of a train step: cross-entropy, backward, optional clipping, step."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()

    def fwd_bwd():
        out = model(x)
        loss = loss_fn(out.reshape(-1, out.shape[-1]), y)
        loss.backward()
        return loss

    fb = maybe(fwd_bwd)

    def step():
        opt.zero_grad(set_to_none=True)
        fb()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    return best_of(step, 20)


def tiny_gpt_class():
    """samples/gpt.c's model (nanoGPT's layout), attention spelled out so that
    PyTorch 1.x runs it too."""
    import math
    import torch
    import torch.nn.functional as F

    class Block(torch.nn.Module):
        def __init__(self, d, heads, block):
            super().__init__()
            self.heads = heads
            self.ln_1 = torch.nn.LayerNorm(d)
            self.c_attn = torch.nn.Linear(d, 3 * d)
            self.c_proj = torch.nn.Linear(d, d)
            self.ln_2 = torch.nn.LayerNorm(d)
            self.c_fc = torch.nn.Linear(d, 4 * d)
            self.mlp_proj = torch.nn.Linear(4 * d, d)
            self.register_buffer("mask", torch.ones(block, block, dtype=torch.bool).tril())

        def forward(self, h):
            n, t, d = h.shape
            hd = d // self.heads
            q, k, v = self.c_attn(self.ln_1(h)).split(d, dim=2)
            q, k, v = (z.reshape(n, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
            a = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
            a = a.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1)
            y = (a @ v).transpose(1, 2).reshape(n, t, d)
            h = h + self.c_proj(y)
            return h + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(h))))

    class TinyGPT(torch.nn.Module):
        def __init__(self, vocab, block, d, heads, layers):
            super().__init__()
            self.wte = torch.nn.Embedding(vocab, d)
            self.wpe = torch.nn.Parameter(torch.randn(block, d) * 0.02)
            self.h = torch.nn.ModuleList(Block(d, heads, block) for _ in range(layers))
            self.ln_f = torch.nn.LayerNorm(d)
            self.lm_head = torch.nn.Linear(d, vocab, bias=False)

        def forward(self, idx):
            h = self.wte(idx) + self.wpe
            for b in self.h:
                h = b(h)
            return self.lm_head(self.ln_f(h))

    return TinyGPT


def main():
    args = sys.argv[1:]
    threads = None
    peer = "torch"
    if "--threads" in args:
        i = args.index("--threads")
        threads = int(args[i + 1])
        del args[i : i + 2]
    if "--peer" in args:
        i = args.index("--peer")
        peer = args[i + 1]
        del args[i : i + 2]
    case = args[0]
    n = int(args[1]) if len(args) > 1 else 0

    if peer == "numpy":
        import numpy as np

        if case != "sgemm":
            raise SystemExit("peers.py: numpy runs sgemm only")
        rng = np.random.default_rng(0)
        a = rng.random((n, n), dtype=np.float32) - 0.5
        b = rng.random((n, n), dtype=np.float32) - 0.5
        t = best_of(lambda: a @ b, 3 if n >= 4096 else 10)
        print(f"RESULT sgemm_{n} {t:.6f} {2 * n**3 / t / 1e9:.1f} GFLOP/s")
        return

    import torch

    if threads:
        torch.set_num_threads(threads)
    compiled = peer == "compile"
    if compiled and not hasattr(torch, "compile"):
        print(f"NOTE torch.compile is not installed (torch {torch.__version__})")
        return
    maybe = torch.compile if compiled else (lambda f: f)
    torch.manual_seed(0)
    if case == "sgemm":
        a = torch.rand(n, n) - 0.5
        b = torch.rand(n, n) - 0.5
        mm = maybe(lambda: a @ b)
        t = best_of(mm, 3 if n >= 4096 else 10)
        print(f"RESULT sgemm_{n} {t:.6f} {2 * n**3 / t / 1e9:.1f} GFLOP/s")
    elif case == "mlp":
        model = torch.nn.Sequential(
            torch.nn.Linear(784, 1024),
            torch.nn.ReLU(),
            torch.nn.Linear(1024, 1024),
            torch.nn.ReLU(),
            torch.nn.Linear(1024, 10),
        )
        x = torch.rand(256, 784) - 0.5
        y = torch.arange(256) % 10
        t = train_step_time(model, torch.optim.Adam(model.parameters(), lr=1e-3), x, y, maybe)
        flops = 3 * 2 * (784 * 1024 + 1024 * 1024 + 1024 * 10) * 256
        print(f"RESULT mlp {t:.6f} {flops / t / 1e9:.1f} GFLOP/s")
    elif case == "cnn":
        c, b = 32, 64
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, c, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(c, 2 * c, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(2 * c * 49, 10),
        )
        x = torch.rand(b, 1, 28, 28) - 0.5
        y = torch.arange(b) % 10
        t = train_step_time(model, torch.optim.Adam(model.parameters(), lr=2e-3), x, y, maybe)
        fwd = 2.0 * b * (28 * 28 * c * 9 + 14 * 14 * 2 * c * c * 9 + 2 * c * 49 * 10)
        print(f"RESULT cnn {t:.6f} {3 * fwd / t / 1e9:.1f} GFLOP/s")
    elif case in ("gpt", "gpt128"):
        vocab, layers, batch = 76, 2, 16
        block, d = (32, 64) if case == "gpt" else (64, 128)
        model = tiny_gpt_class()(vocab, block, d, 4, layers)
        decay = [p for n, p in model.named_parameters() if p.dim() == 2]
        other = [p for n, p in model.named_parameters() if p.dim() != 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
        i = torch.arange(batch * block)
        x = (i * 37 % vocab).reshape(batch, block)
        y = (i * 37 + 11) % vocab
        t = train_step_time(model, opt, x, y, maybe, clip=1.0)
        weights = layers * 12 * d * d + vocab * d
        flops = 6 * weights * batch * block + layers * 6 * 2 * block * block * d * batch
        print(f"RESULT {case} {t:.6f} {flops / t / 1e9:.1f} GFLOP/s")
    elif case == "chain":
        x = torch.rand(100_000_000) - 0.5
        f = maybe(lambda: torch.exp(x * 0.5 + 1) * x - 2)
        t = best_of(f, 5)
        print(f"RESULT chain {t:.6f} {8e8 / t / 1e9:.1f} GB/s")
    elif case == "tanh":
        x = torch.rand(100_000_000) - 0.5
        f = maybe(lambda: torch.tanh(torch.exp(-x) * 2 + 1) * x)
        t = best_of(f, 5)
        print(f"RESULT tanh {t:.6f} {8e8 / t / 1e9:.1f} GB/s")
    elif case == "tutorial":
        f = maybe(lambda: torch.randn(10000, 10000) * torch.randn(10000, 10000))
        t = best_of(f, n or 3)
        print(f"RESULT tutorial {t:.6f} {4e8 / t / 1e9:.1f} GB/s")
    else:
        raise SystemExit(f"peers.py: unknown case {case}")


if __name__ == "__main__":
    main()
