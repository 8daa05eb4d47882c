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
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.rand(256, 784) - 0.5
        y = torch.arange(256) % 10

        def fwd_bwd():
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss

        fb = maybe(fwd_bwd)

        def step():
            opt.zero_grad(set_to_none=True)
            fb()
            opt.step()

        t = best_of(step, 20)
        flops = 3 * 2 * (784 * 1024 + 1024 * 1024 + 1024 * 10) * 256
        print(f"RESULT mlp {t:.6f} {flops / t / 1e9:.1f} GFLOP/s")
    elif case == "chain":
        x = torch.rand(100_000_000) - 0.5
        f = maybe(lambda: torch.exp(x * 0.5 + 1) * x - 2)
        t = best_of(f, 5)
        print(f"RESULT chain {t:.6f} {8e8 / t / 1e9:.1f} GB/s")
    elif case == "tutorial":
        f = maybe(lambda: torch.randn(10000, 10000) * torch.randn(10000, 10000))
        t = best_of(f, n or 3)
        print(f"RESULT tutorial {t:.6f} {4e8 / t / 1e9:.1f} GB/s")
    else:
        raise SystemExit(f"peers.py: unknown case {case}")


if __name__ == "__main__":
    main()
