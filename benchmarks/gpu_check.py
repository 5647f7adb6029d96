"""GPU check of the CuPy backend: correctness on real CuPy arrays, then training-step timings.

Run on a machine with an NVIDIA GPU and CuPy:

    python benchmarks/gpu_check.py                  every check, then timings (cupy, and torch if importable)
    python benchmarks/gpu_check.py --quick          fewer examples and rounds (a couple of minutes)
    python benchmarks/gpu_check.py --allow-cpu      run the same script on the CPU path (a self-test of the script)

What it does, in order (exit status 1 if any correctness step fails; timings never fail):

1. kernels   every fused kernel (backends/cupy/kernels.py) on CuPy arrays against the same kernel's NumPy
             run, which the test suite holds to the reference's math: this is where cupy.fuse's compiled
             CUDA code meets the tested Python body. float64 and float32.
2. rounds    a few training rounds of each loss and optimizer against the float64 reference
             (float64 on the GPU must match to ~1e-9, float32 to float32's error).
2b. options  the same with each gradient penalty (double backpropagation) and annealed instance noise, and
             with a conditional GAN (label columns in strided buffers): the paths with their own kernels.
3. conformance   `python -m conformance --backend cupy` (the project's oracle, including the penalty_grads,
             remedies_rounds and conditional checks), when it is installed.
4. timings   rounds per second of `train_rounds` at a few sizes, float32, for the cupy backend and, if it
             imports and sees the GPU, the torch backend; printed as a table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends import load_backend  # noqa: E402
from backends.cupy import backend as cupy_backend  # noqa: E402
from backends.cupy.backend import CupyBackend  # noqa: E402
from backends.cupy.kernels import kernels_for  # noqa: E402
from backends.interface import ReferenceBackend  # noqa: E402
from backends.run import config, datasets  # noqa: E402
from reference import losses, optim, recipes  # noqa: E402
from reference.penalty import PENALTIES, PenaltySpec  # noqa: E402
from reference.train import StepInputs, draw_inputs  # noqa: E402

SIZES = [  # (label, dataset for the recipe, data size, hidden sizes, batch)
    ("ring 64x64 b128", "ring", 2, (64, 64), 128),
    ("grid 128x128 b256", "grid", 2, (128, 128), 256),
    ("mnist 512x512 b128", "mnist", 784, (512, 512), 128),
    ("mnist 1024x1024 b512", "mnist", 784, (1024, 1024), 512),
]


def _max_rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b)))) if a.size else 0.0


def check_kernels(xp, failures: list) -> None:
    """Each fused kernel on device arrays vs its NumPy run on the same inputs."""
    dev, host = kernels_for(xp), kernels_for(np)
    rng = np.random.default_rng(0)
    for dtype, tol in [(np.float64, 1e-13), (np.float32, 1e-5)]:
        def arrays(*shapes, dtype=dtype):
            return [rng.standard_normal(s).astype(dtype) for s in shapes]

        cases = []
        for name in dev.bias_act:
            cases.append((f"bias_{name}", dev.bias_act[name], host.bias_act[name], arrays((64, 33), (33,)), [0.2]))
        for name, kernel in dev.act_grad.items():
            if kernel is not None:
                y = host.bias_act[name]
                h, b = arrays((64, 33), (33,))
                y(h, b, 0.2)  # a real activation output, so f'(y) is meaningful
                cases.append((f"grad_{name}", kernel, host.act_grad[name], [arrays((64, 33))[0], h], [0.2]))
        logits = (rng.standard_normal((40, 1)) * np.array([1e4 if i % 5 == 0 else 3.0 for i in range(40)])[:, None])
        sign = np.where(rng.random((40, 1)) < 0.5, -1.0, 1.0)
        coef = np.full((40, 1), 1.0 / 40)
        cases.append(("logistic_loss", dev.logistic_loss, host.logistic_loss,
                      [logits.astype(dtype), sign.astype(dtype), coef.astype(dtype), *arrays((40, 1), (40, 1))], []))
        cases.append(("linear_loss", dev.linear_loss, host.linear_loss,
                      [logits.astype(dtype), (sign * coef).astype(dtype), *arrays((40, 1), (40, 1))], []))
        n = 10_000
        p, g, m = arrays((n,), (n,), (n,))
        v = np.abs(arrays((n,))[0])
        cases += [
            ("sgd", dev.sgd, host.sgd, [p, g], [0.01]),
            ("sgd_momentum", dev.sgd_momentum, host.sgd_momentum, [p, g, m], [0.01, 0.9]),
            ("adam", dev.adam, host.adam, [p, g, m, v], [0.5, 0.5, 0.999, 0.001, 0.02, 0.03, 1e-8]),
            ("rmsprop", dev.rmsprop, host.rmsprop, [p, g, v], [1e-3, 0.99, 0.01, 1e-8]),
            ("rmsprop_momentum", dev.rmsprop_momentum, host.rmsprop_momentum, [p, g, v, m],
             [1e-3, 0.99, 0.01, 1e-8, 0.5]),
        ]
        for name, dev_kernel, host_kernel, arrs, scalars in cases:
            host_args = [a.copy() for a in arrs]
            dev_args = [xp.asarray(a) for a in arrs]
            host_kernel(*host_args, *scalars)
            dev_kernel(*dev_args, *scalars)
            err = max(_max_rel(cupy_backend._to_host(d), h) for d, h in zip(dev_args, host_args, strict=True))
            status = "ok" if err <= tol else "FAIL"
            if err > tol:
                failures.append(f"kernel {name} {np.dtype(dtype).name}: max rel err {err:.2e} > {tol:.0e}")
            print(f"  kernel {name:18s} {np.dtype(dtype).name}: max rel err {err:.2e}  {status}")


def check_rounds(device: str, failures: list, rounds: int) -> None:
    """Training rounds of every loss and optimizer on the device vs the float64 reference."""
    for loss in losses.LOSSES:
        for opt in ("sgd", "adam", "rmsprop"):
            spec = optim.OptimizerSpec(opt, lr=1e-2 if opt != "rmsprop" else 1e-3, momentum=0.5 if opt != "adam" else 0)
            config = recipes.default_config("ring", 2, loss, hidden=(32, 32), batch_size=64,
                                            d_optimizer=spec, g_optimizer=spec)
            results = {}
            for dtype, tol in [("float64", 1e-9), ("float32", 2e-3)]:
                backend = CupyBackend(config, dtype=dtype, device=device)
                backend.init(0)
                rng = np.random.default_rng(1)
                ref = ReferenceBackend(config)
                ref.init(0)
                for _ in range(rounds):
                    k, m = config.d_steps, config.g_steps
                    inputs = StepInputs(rng.standard_normal((k, 64, 2)), rng.standard_normal((k, 64, 2)),
                                        rng.standard_normal((m, 64, 2)))
                    backend.train_step(inputs)
                    ref.train_step(inputs)
                ours, theirs = backend.export_params(), ref.export_params()
                err = max(_max_rel(ours[name], theirs[name]) for name in theirs)
                results[dtype] = err
                if not err <= tol:
                    failures.append(f"rounds {loss} {opt} {dtype}: max rel err {err:.2e} > {tol:.0e}")
            ok = results["float64"] <= 1e-9 and results["float32"] <= 2e-3
            print(f"  rounds {loss:13s} {opt:8s}: max rel err float64 {results['float64']:.1e}, "
                  f"float32 {results['float32']:.1e}  {'ok' if ok else 'FAIL'}")


def check_options(device: str, failures: list, rounds: int) -> None:
    """Rounds with each gradient penalty and annealed instance noise, and a conditional GAN, vs the reference.
    These paths have their own kernels (double backpropagation, noise, label columns in strided buffers)."""
    data, labels = datasets.load_labelled("ring", train_size=2000)[:2]
    variants = {f"penalty {kind}": dict(penalty=PenaltySpec(kind, 1.0), instance_noise=0.1,
                                        instance_noise_anneal=rounds, loss="wasserstein" if kind == "wgan-gp"
                                        else "nonsaturating") for kind in PENALTIES}
    variants["conditional"] = dict(conditional=True, instance_noise=0.1)
    for name, options in variants.items():
        opts = config.resolve({"dataset": "ring", "hidden": [32, 32], "batch_size": 64, **{
            k: v for k, v in {"loss": options.get("loss"), "conditional": options.get("conditional"),
                              "instance_noise": options["instance_noise"],
                              "instance_noise_anneal": options.get("instance_noise_anneal")}.items()
            if v is not None}, **({"penalty": options["penalty"].kind} if "penalty" in options else {})})
        train_config = config.train_config(opts, 2)
        results = {}
        for dtype, tol in [("float64", 1e-9), ("float32", 2e-3)]:
            backend, ref = CupyBackend(train_config, dtype=dtype, device=device), ReferenceBackend(train_config)
            backend.init(0)
            ref.init(0)
            rng = np.random.default_rng(1)
            for _ in range(rounds):
                inputs = draw_inputs(train_config, data, rng, labels if train_config.needs_labels else None)
                backend.train_step(inputs)
                ref.train_step(inputs)
            ours, theirs = backend.export_params(), ref.export_params()
            results[dtype] = max(_max_rel(ours[k], theirs[k]) for k in theirs)
            if not results[dtype] <= tol:
                failures.append(f"rounds with {name} {dtype}: max rel err {results[dtype]:.2e} > {tol:.0e}")
        ok = results["float64"] <= 1e-9 and results["float32"] <= 2e-3
        print(f"  rounds with {name:18s}: max rel err float64 {results['float64']:.1e}, "
              f"float32 {results['float32']:.1e}  {'ok' if ok else 'FAIL'}")


def run_conformance(profile: str, failures: list) -> None:
    try:
        import conformance  # noqa: F401
    except ImportError:
        print("  conformance package not installed: skipped (the kernel and round checks above stand in)")
        return
    command = [sys.executable, "-m", "conformance", "--backend", "cupy", "--profile", profile]
    print("  $ " + " ".join(command[1:]))
    status = subprocess.call(command, cwd=ROOT)
    if status != 0:
        failures.append(f"python -m conformance --backend cupy exited with {status}")


def _timed(backend_cls, config, device, data, rounds, chunk):
    backend = backend_cls(config, dtype="float32", device=device)
    backend.init(0)
    backend.set_data(data)
    rng = np.random.default_rng(0)
    k, m, b, z = config.d_steps, config.g_steps, config.batch_size, config.spec.z_size

    def draws(n):
        return (rng.integers(0, len(data), (n, k, b)), rng.standard_normal((n, k, b, z)).astype(np.float32),
                rng.standard_normal((n, m, b, z)).astype(np.float32))

    backend.train_rounds(*draws(min(chunk, 20)))  # warm-up: kernel compilation, cuBLAS handles, memory pool
    chunks = [draws(chunk) for _ in range(max(1, rounds // chunk))]
    start = time.perf_counter()
    for c in chunks:
        backend.train_rounds(*c)  # returns host metrics: the device has finished the chunk
    seconds = time.perf_counter() - start
    return len(chunks) * chunk / seconds


def timings(device: str, rounds: int, chunk: int) -> None:
    torch_cls = None
    try:
        torch_cls = load_backend("torch")
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            torch_cls = None
            print("  torch imports but sees no GPU: torch column skipped")
    except Exception as error:  # ImportError, or the torch backend missing
        print(f"  torch backend unavailable ({error}): torch column skipped")
    print(f"\n  {'size':24s} {'cupy rounds/s':>14s} {'torch rounds/s':>15s} {'cupy/torch':>11s}")
    for label, dataset, data_size, hidden, batch in SIZES if device != "cpu" else SIZES[:2]:
        config = recipes.default_config(dataset, data_size, "nonsaturating", hidden=hidden, batch_size=batch)
        data = np.random.default_rng(0).standard_normal((20_000, data_size)).astype(np.float32)
        cupy_rate = _timed(CupyBackend, config, device, data, rounds, chunk)
        torch_rate = _timed(torch_cls, config, device, data, rounds, chunk) if torch_cls is not None else None
        ratio = f"{cupy_rate / torch_rate:11.2f}" if torch_rate else f"{'-':>11s}"
        torch_text = f"{torch_rate:15.1f}" if torch_rate else f"{'-':>15s}"
        print(f"  {label:24s} {cupy_rate:14.1f} {torch_text} {ratio}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer examples and rounds")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU path when no GPU is usable")
    parser.add_argument("--skip-conformance", action="store_true")
    parser.add_argument("--skip-timings", action="store_true")
    args = parser.parse_args(argv)

    usable, why = cupy_backend.cuda_status()
    if usable:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"GPU: {name}; CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
        device, xp = "cuda", cupy
    elif args.allow_cpu:
        print(f"no usable GPU ({why}); checking the CPU path as asked")
        device, xp = "cpu", np
    else:
        print(f"no usable GPU: {why}. Run on a GPU machine, or pass --allow-cpu to test this script.")
        return 2

    failures: list[str] = []
    print("\n1. fused kernels on device arrays vs their NumPy run")
    check_kernels(xp, failures)
    print("\n2. training rounds vs the float64 reference")
    check_rounds(device, failures, rounds=3 if args.quick else 10)
    print("\n2b. rounds with gradient penalties, instance noise and a conditional GAN vs the reference")
    check_options(device, failures, rounds=3 if args.quick else 10)
    if not args.skip_conformance:
        print("\n3. conformance oracle")
        run_conformance("dev" if args.quick else "ci", failures)
    if not args.skip_timings:
        print("\n4. timings (train_rounds, float32, nonsaturating loss, Adam; higher is better)")
        timings(device, rounds=100 if args.quick else 1000, chunk=50 if args.quick else 200)
    print()
    if failures:
        print(f"{len(failures)} correctness failure(s):")
        for failure in failures:
            print("  " + failure)
        return 1
    print("all correctness checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
