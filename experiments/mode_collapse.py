"""Mode collapse on the 8-Gaussian ring: modes captured over training, per loss and seed.

Mode collapse (Metz et al. 2017): G puts its samples on a few of the data's modes, each
over-optimised against the current D, and may rotate between them. The ring of 8 Gaussians (reference/
data.py, the 2D-ring of Lin et al. 2018) makes it measurable: reference/metrics.py's mode_metrics counts the
modes that receive at least one "high-quality" sample (within 3 standard deviations of the mode), the share of
high-quality samples, and the reverse KL between the modes' shares and the uniform 1/8 (0 for an even spread).

Each run uses reference/recipes.py's default_config("ring", 2, loss) unchanged:

    minimax, nonsaturating  Adam(lr 1e-3, beta1 0.5) for both networks, k = m = 1
    wasserstein             RMSprop(lr 5e-5), k = 5 critic updates per G update, clipping c = 0.01

and the same data and z streams as `python -m reference train` (training set from [seed, 3], rounds from
[seed, 2], 2,500 evaluation z from [seed, 4]). Mode metrics are computed every `check_every` rounds.

Unrolled GANs (Metz et al. 2017), the other remedy the primer lists, are not in the reference yet, so they are
not part of this experiment.
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import numpy as np

from reference import data, gan, metrics, recipes, train

from .common import parser, pyplot, report, save_figure, single_thread

LOSSES = ("minimax", "nonsaturating", "wasserstein")


def run_one(loss, seed, steps, check_every, num_samples=2500):
    """One training run; returns the mode metrics at every check as a list of dicts (with "step")."""
    dataset = data.get_dataset("ring")
    config = recipes.default_config("ring", dataset.dim, loss)
    training_set = dataset.sample(100_000, np.random.default_rng([seed, 3]))
    z_eval = np.random.default_rng([seed, 4]).standard_normal((num_samples, config.spec.z_size))
    checks = []

    def on_step(state, m):
        if m.step % check_every == 0:
            samples = gan.generate(config.spec, state.params, z_eval)
            checks.append({"step": m.step, **metrics.mode_metrics(samples, dataset.modes, dataset.sigma).to_dict()})

    with single_thread():
        train.train(config, training_set, steps, seed, on_step=on_step)
    return checks


def run(seeds=(0, 1, 2), steps=2500, check_every=250, losses=LOSSES):
    return {(loss, seed): run_one(loss, seed, steps, check_every) for loss in losses for seed in seeds}


def summarise(checks):
    """Final modes, the fewest and most modes over the second half of the run, and how often the count
    fell after having reached 8 (G dropping a mode it had covered)."""
    half = checks[len(checks) // 2:]
    counts = [c["modes_captured"] for c in checks]
    reached = next((i for i, n in enumerate(counts) if n == 8), None)
    drops = 0 if reached is None else sum(1 for n in counts[reached:] if n < 8)
    return {"final": counts[-1], "final_high_quality": checks[-1]["high_quality"],
            "final_reverse_kl": checks[-1]["reverse_kl"], "late_min": min(c["modes_captured"] for c in half),
            "late_max": max(c["modes_captured"] for c in half),
            "first_8": None if reached is None else checks[reached]["step"], "checks_below_8_after": drops}


def figure(results, out_dir, name="mode_collapse.png"):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    colors = {loss: f"C{i}" for i, loss in enumerate(LOSSES)}
    seeds = sorted({seed for _, seed in results})
    styles = dict(zip(seeds, ["-", "--", ":", "-."] * 4, strict=False))
    for (loss, seed), checks in results.items():
        steps = [c["step"] for c in checks]
        axes[0].plot(steps, [c["modes_captured"] for c in checks], styles[seed], color=colors[loss],
                     label=f"{loss}" if seed == seeds[0] else None)
        axes[1].plot(steps, [100 * c["high_quality"] for c in checks], styles[seed], color=colors[loss])
    axes[0].set_ylabel("modes captured (of 8)")
    axes[0].set_ylim(0, 8.5)
    axes[1].set_ylabel("high-quality samples (%)")
    for ax in axes:
        ax.set_xlabel("training round")
    axes[0].legend(fontsize=8, title="loss (line style: seed)", title_fontsize=8)
    axes[0].set_title("ring: modes captured over training")
    axes[1].set_title("ring: share of samples within 3 sigma of a mode")
    return save_figure(fig, out_dir, name)


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES), help="default: all three")
    p.add_argument("--seeds", type=int, default=3, help="how many seeds, from --seed on (default %(default)s)")
    p.add_argument("--steps", type=int, default=2500, help="training rounds per run (default %(default)s)")
    p.add_argument("--check-every", type=int, default=250, help="rounds between mode checks (default %(default)s)")
    args = p.parse_args(argv)
    for what in ("seeds", "steps", "check_every"):
        if getattr(args, what) <= 0:
            p.error(f"--{what.replace('_', '-')} must be positive, got {getattr(args, what)}")
    if args.check_every > args.steps:
        p.error(f"--check-every ({args.check_every}) must not exceed --steps ({args.steps})")
    seeds = tuple(range(args.seed, args.seed + (1 if args.quick else args.seeds)))
    steps, check_every = (250, 50) if args.quick else (args.steps, args.check_every)
    results = run(seeds=seeds, steps=steps, check_every=check_every, losses=tuple(args.losses))
    name = "mode_collapse.png" if args.steps == 2500 else f"mode_collapse_{args.steps}_rounds.png"
    lines = [f"ring, recipe settings, {steps} rounds, 2,500 samples per check"]
    for (loss, seed), checks in results.items():
        s = summarise(checks)
        lines.append(f"{loss:13s} seed {seed}: modes over time {[c['modes_captured'] for c in checks]}, "
                     f"high-quality % {[round(100 * c['high_quality']) for c in checks]}; final "
                     f"{s['final']}/8, high quality {100 * s['final_high_quality']:.1f}%, reverse KL "
                     f"{s['final_reverse_kl']:.3f}; first 8/8 at round {s['first_8']}, later checks below 8: "
                     f"{s['checks_below_8_after']}")
    lines.append(f"wrote {figure(results, args.out_dir, name)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
