#!/usr/bin/env python3
"""gpu_peers.py - the peers of bench/gpu.c on the same GPU: PyTorch eager and torch.compile.

    gpu_peers.py --peer eager|compile CASE...

CASE is info, copy:N[:R], tutorial:N[:R], chain:N[:R], sgemm:N[:R] or mlp:B[:R]
(R timed runs, after warm-up runs). Prints, as bench_gpu does, one line per case
    RESULT <case> <seconds> <rate> <unit>
with the best wall-clock time of R runs, each followed by torch.cuda.synchronize()
(as each kiln_module_run synchronises at its end), or
    NOTE <case> <why there is no figure>
when torch, CUDA, torch.compile or the case itself fails; the other cases go on.
The compile peer also prints "RESULT first_<case> ..." for the first call
(compile included). TF32 is off everywhere: every peer computes in f32 as Kiln does.
"""
import gc
import os
import sys
import time

WARMUP = 3


def note(case, why):
    why = " ".join(str(why).split()).replace("|", "/")
    print(f"NOTE {case} {why[:300]}", flush=True)


def result(case, t, rate, unit):
    print(f"RESULT {case} {t:.6f} {rate:.1f} {unit}", flush=True)


def main():
    args = sys.argv[1:]
    peer = "eager"
    if "--peer" in args:
        i = args.index("--peer")
        peer = args[i + 1]
        del args[i : i + 2]
    specs = [a.split(":") for a in args]
    labels = [s[0] if s[0] == "info" else f"{s[0]}_{int(float(s[1]))}" for s in specs]

    def all_notes(why):
        for label in labels:
            if label != "info":
                note(label, why)

    try:
        import torch
    except ImportError as e:
        return all_notes(f"torch is not installed for {sys.executable} ({e})")
    if "info" in labels:
        print(f"INFO torch {torch.__version__} CUDA {torch.version.cuda}", flush=True)
    # BENCH_PEERS_DEVICE=cpu: a test of the harness where there is no GPU, not a benchmark
    dev = torch.device(os.environ.get("BENCH_PEERS_DEVICE", "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        return all_notes(
            f"torch {torch.__version__} at {sys.executable} sees no CUDA device"
            f" (torch.cuda.is_available() is False; built with CUDA {torch.version.cuda})"
        )
    if peer == "compile" and not hasattr(torch, "compile"):
        return all_notes(f"torch.compile is not in torch {torch.__version__}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    compiled = peer == "compile"
    maybe = (lambda f: torch.compile(f, dynamic=False)) if compiled else (lambda f: f)

    def timed(label, fn, runs):
        """Best of runs; the compile peer's first call (compile and run) is reported too."""
        t = time.perf_counter()
        fn()
        sync()
        if compiled:
            first = time.perf_counter() - t
            result(f"first_{label}", first, first * 1e3, "ms")
        for _ in range(WARMUP):
            fn()
        sync()
        best = float("inf")
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return best

    def copy(n, runs):
        src = torch.rand(n, device=dev)
        dst = torch.empty_like(src)
        t = timed(f"copy_{n}", lambda: dst.copy_(src), runs)
        result(f"copy_{n}", t, 8 * n / t / 1e9, "GB/s")  # n floats read, n written

    def tutorial(n, runs):
        f = maybe(lambda: torch.randn(n, n, device=dev) * torch.randn(n, n, device=dev))
        t = timed(f"tutorial_{n}", f, runs)
        result(f"tutorial_{n}", t, 4 * n * n / t / 1e9, "GB/s")

    def chain(n, runs):
        x = torch.rand(n, device=dev) - 0.5
        f = maybe(lambda: torch.tanh(torch.exp(-x) * 2 + 1) * x)
        t = timed(f"chain_{n}", f, runs)
        result(f"chain_{n}", t, 8 * n / t / 1e9, "GB/s")

    def sgemm(n, runs):
        a = torch.rand(n, n, device=dev) - 0.5
        b = torch.rand(n, n, device=dev) - 0.5
        c = torch.empty(n, n, device=dev)
        f = maybe(lambda: torch.mm(a, b, out=c))
        t = timed(f"sgemm_{n}", f, runs)
        result(f"sgemm_{n}", t, 2 * n**3 / t / 1e9, "GFLOP/s")

    def mlp(batch, runs):
        model = torch.nn.Sequential(
            torch.nn.Linear(784, 1024),
            torch.nn.ReLU(),
            torch.nn.Linear(1024, 1024),
            torch.nn.ReLU(),
            torch.nn.Linear(1024, 10),
        ).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.rand(batch, 784, device=dev) - 0.5
        y = torch.arange(batch, device=dev) % 10
        # torch.compile: the forward and loss (AOTAutograd compiles the backward with
        # them) and the optimizer step, as PyTorch's recipe "Compiling the optimizer".
        fwd = maybe(lambda: loss_fn(model(x), y))
        opt_step = maybe(lambda: opt.step())

        def step():
            opt.zero_grad(set_to_none=True)
            fwd().backward()
            opt_step()

        t = timed(f"mlp_{batch}", step, runs)
        result(f"mlp_{batch}", t, batch / t, "samples/s")

    cases = {"copy": copy, "tutorial": tutorial, "chain": chain, "sgemm": sgemm, "mlp": mlp}
    for spec, label in zip(specs, labels):
        if label == "info":
            if dev.type == "cuda":
                print(f"INFO gpu {torch.cuda.get_device_name(0)}", flush=True)
            continue
        try:
            cases[spec[0]](int(float(spec[1])), int(spec[2]) if len(spec) > 2 else 20)
        except Exception as e:  # noqa: BLE001 - any failure is a row in the table
            lines = str(e).strip().splitlines() or [""]
            note(label, f"{peer}: {type(e).__name__}: {lines[0]}")
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
