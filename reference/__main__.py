"""python -m reference train: train the reference GAN from the command line (NumPy only).

    python -m reference train                       # non-saturating GAN on the 8-Gaussian ring
    python -m reference train --loss wasserstein --dataset grid --steps 20000 --seed 3 --out runs/wgan

Prints progress, then the mode metrics of 2,500 generated samples, and writes DIR/samples.npy with those
samples (shape (2500, data size)). The full program with checkpoints, plots and resuming is
`python -m backends.torch train` (and the other backends); this one stays small enough to read.

Seeds: the network weights come from gan.init_params(spec, seed), the round inputs from the stream
[seed, 2] (train.train), the training set (100,000 samples) from [seed, 3], the 2,500 final z from [seed, 4].
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import data, gan, losses, metrics, recipes, train

TRAINING_SET_SIZE = 100_000
NUM_SAMPLES = 2500


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m reference", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train", help="train a GAN and write DIR/samples.npy")
    p.add_argument("--loss", choices=losses.LOSSES, default="nonsaturating")
    p.add_argument("--dataset", choices=list(data.DATASETS), default="ring")
    p.add_argument("--steps", type=int, default=None, help="training rounds (default: the dataset's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/reference"), help="output folder (default %(default)s)")
    p.add_argument("--log-every", type=int, default=500, help="print a progress line every N rounds")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps <= 0:
        parser.error(f"--steps must be positive, got {args.steps}")
    if args.log_every <= 0:
        parser.error(f"--log-every must be positive, got {args.log_every}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out_file = args.out / "samples.npy"
    if out_file.exists():
        print(f"error: {out_file} already exists; choose another --out", file=sys.stderr)
        return 2
    dataset = data.get_dataset(args.dataset)
    config = recipes.default_config(args.dataset, dataset.dim, args.loss)
    steps = args.steps or recipes.default_steps(args.dataset)
    training_set = dataset.sample(TRAINING_SET_SIZE, np.random.default_rng([args.seed, 3]))  # (N, dim)
    print(f"training a {args.loss} GAN on {args.dataset} for {steps} rounds (seed {args.seed})")

    start = time.perf_counter()

    def report(state, m):
        if m.step % args.log_every == 0 or m.step == steps:
            d_side = (f"critic gap {m.critic_gap:+.4f}" if args.loss == "wasserstein"
                      else f"D acc real {m.d_acc_real:.2f} fake {m.d_acc_fake:.2f}")
            rate = m.step / (time.perf_counter() - start)
            print(f"step {m.step:6d}/{steps}  D loss {m.d_loss:.4f}  G loss {m.g_loss:.4f}  {d_side}  "
                  f"{rate:.0f} steps/s", flush=True)
        if not (np.isfinite(m.d_loss) and np.isfinite(m.g_loss)):
            raise FloatingPointError(f"loss became NaN/Inf at step {m.step}")

    try:
        state = train.train(config, training_set, steps, args.seed, on_step=report)
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    z = np.random.default_rng([args.seed, 4]).standard_normal((NUM_SAMPLES, config.spec.z_size))
    samples = gan.generate(config.spec, state.params, z)  # (2500, dim)
    if dataset.modes is not None:
        print(f"mode metrics: {metrics.mode_metrics(samples, dataset.modes, dataset.sigma)}")
    else:
        print(f"samples: mean {np.round(samples.mean(0), 3)}, std {np.round(samples.std(0), 3)} "
              f"(data: mean {np.round(training_set.mean(0), 3)}, std {np.round(training_set.std(0), 3)})")
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(out_file, samples)
    print(f"wrote {out_file} {samples.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
