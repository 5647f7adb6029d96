"""Throughput of the JAX backend: `python -m backends.jax.bench [--rounds N] [--device D] [--dataset ring]`.

Prints rounds per second for the three ways of training (train_step round by round, train_rounds in the
small chunks the shared CLI uses between log lines, train_rounds in large chunks) and for each dtype,
with the compile time kept apart (the first chunk of each kind is a warm-up). Figures, not a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reference import data as toy_data
from reference import recipes
from reference.train import StepInputs

from .backend import JaxBackend


def measure(config, dtype, device, data, rounds, chunk):
    backend = JaxBackend(config, dtype=dtype, device=device)
    backend.init(0)
    backend.set_data(data)
    rng = np.random.default_rng(1)
    k, m, b, z = config.d_steps, config.g_steps, config.batch_size, config.spec.z_size

    def draw(n):
        return (rng.integers(0, len(data), (n, k, b)), rng.standard_normal((n, k, b, z)),
                rng.standard_normal((n, m, b, z)))

    if chunk == 0:  # train_step, one round per call
        def run(n):
            index, z_d, z_g = draw(n)
            for r in range(n):
                backend.train_step(StepInputs(data[index[r]], z_d[r], z_g[r]))
    else:
        def run(n):
            for start in range(0, n, chunk):
                backend.train_rounds(*draw(min(chunk, n - start)))
    t0 = time.perf_counter()
    run(max(chunk, 1))  # warm-up: compiles
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(rounds)
    return rounds / (time.perf_counter() - t0), compile_s


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m backends.jax.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ring", choices=["gaussian1d", "ring", "grid", "swissroll"])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32", "bfloat16"])
    args = parser.parse_args(argv)
    dataset = toy_data.get_dataset(args.dataset)
    data = dataset.sample(10_000, np.random.default_rng(0))
    config = recipes.default_config(args.dataset, dataset.dim)
    print(f"{args.dataset}: hidden {config.spec.generator.hidden_sizes}, batch {config.batch_size}, "
          f"{args.rounds} rounds, device {args.device or 'default'}")
    print(f"{'dtype':<9} {'mode':<22} {'rounds/s':>10} {'warm-up s':>10}")
    for dtype in args.dtypes:
        for label, chunk in [("train_step", 0), ("train_rounds chunk 10", 10), ("train_rounds chunk 500", 500)]:
            rate, compile_s = measure(config, dtype, args.device, data, args.rounds, chunk)
            print(f"{dtype:<9} {label:<22} {rate:>10.1f} {compile_s:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
