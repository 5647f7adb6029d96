"""Convergence: as G improves, D's accuracy falls toward 50%; after that, G keeps moving.

The non-saturating GAN of the gaussian1d recipe (data N(4, 1.25^2), reference/recipes.py) trains with
reference/train.py's train (k = m = 1). Every round reports D's accuracy on its last real and fake
batches (StepMetrics.d_acc_real, d_acc_fake); we average (real + fake) / 2 over windows of rounds. Every
`check_every` rounds we measure G's samples against the data with the 1-D Wasserstein-1 distance
W1 (mean |difference| of 5,000 sorted samples of each), and G's sample mean and standard deviation.

Two things to see (Goodfellow et al. 2014; the primer's "convergence" chapter):

1. D's accuracy starts high, while G's samples sit far from the data, and falls to about 50% as G
   matches the data: the optimal D against a perfect G is a coin flip (experiments/optimal_discriminator.py).
2. Reaching 50% is not a resting point. D's feedback is then mostly noise, and G keeps moving: W1
   and G's standard deviation keep wandering up and down rather than settling.
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import numpy as np

from reference import data, gan, recipes, train

from .common import parser, pyplot, report, save_figure, single_thread


def run(steps=3000, seed=0, window=25, check_every=50, eval_size=5000):
    dataset = data.get_dataset("gaussian1d")
    config = recipes.default_config("gaussian1d", 1, "nonsaturating")
    training_set = dataset.sample(100_000, np.random.default_rng([seed, 3]))
    reference_sample = np.sort(dataset.sample(eval_size, np.random.default_rng([seed, 50]))[:, 0])
    z_eval = np.random.default_rng([seed, 4]).standard_normal((eval_size, config.spec.z_size))
    accuracy, checks = [], []

    def w1_and_moments(params):
        samples = gan.generate(config.spec, params, z_eval)[:, 0]
        w1 = float(np.mean(np.abs(np.sort(samples) - reference_sample)))
        return {"w1": w1, "mean": float(samples.mean()), "std": float(samples.std())}

    def on_step(state, m):
        accuracy.append(0.5 * (m.d_acc_real + m.d_acc_fake))
        if m.step % check_every == 0:
            checks.append({"step": m.step, **w1_and_moments(state.params)})

    with single_thread():
        initial = w1_and_moments(gan.init_params(config.spec, seed))
        train.train(config, training_set, steps, seed, on_step=on_step)
    accuracy = np.array(accuracy)
    n_windows = steps // window
    windows = accuracy[: n_windows * window].reshape(n_windows, window).mean(axis=1)
    return {"accuracy": accuracy, "window": window, "window_accuracy": windows,
            "checks": [{"step": 0, **initial}, *checks], "steps": steps}


def figure(results, out_dir):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    w = results["window"]
    ax1.plot((np.arange(len(results["window_accuracy"])) + 0.5) * w, results["window_accuracy"])
    ax1.axhline(0.5, color="gray", ls=":")
    ax1.set_xscale("log")
    ax1.set_xlabel("training round")
    ax1.set_ylabel(f"D accuracy (mean over {w} rounds)")
    ax1.set_title("D's accuracy falls to a coin flip")
    steps = [c["step"] for c in results["checks"]]
    ax2.plot(steps, [c["w1"] for c in results["checks"]], label="W1(G's samples, data)")
    ax2.plot(steps, [c["std"] for c in results["checks"]], label="std of G's samples")
    ax2.axhline(1.25, color="C1", ls=":", label="std of the data (1.25)")
    ax2.set_xlabel("training round")
    ax2.set_title("after that, G keeps moving")
    ax2.legend(fontsize=8)
    return save_figure(fig, out_dir, "convergence.png")


def summary(results):
    """Accuracy over the first window and over later stretches; W1 before and after D reaches ~50%."""
    acc, w = results["accuracy"], results["window"]
    steps = results["steps"]
    first = float(acc[:w].mean())
    second_half = float(acc[steps // 2:].mean())
    late = [c for c in results["checks"] if c["step"] > steps // 2]
    return {"first_window": first, "second_half": second_half, "initial_w1": results["checks"][0]["w1"],
            "late_w1_min": min(c["w1"] for c in late), "late_w1_max": max(c["w1"] for c in late),
            "late_std_min": min(c["std"] for c in late), "late_std_max": max(c["std"] for c in late)}


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    results = run(steps=400 if args.quick else 3000, seed=args.seed)
    s = summary(results)
    w, steps = results["window"], results["steps"]
    lines = [f"non-saturating GAN, gaussian1d recipe, {steps} rounds, seed {args.seed}",
             f"D accuracy, rounds 1-{w}: {100 * s['first_window']:.1f}%; "
             f"rounds {steps // 2 + 1}-{steps}: {100 * s['second_half']:.1f}%"]
    for i in (0, 1, 2, 3, 7, 15, 39, 79, len(results["window_accuracy"]) - 1):
        if i < len(results["window_accuracy"]):
            acc = results["window_accuracy"][i]
            lines.append(f"   rounds {i * w + 1:5d}-{(i + 1) * w:5d}: D accuracy {100 * acc:.1f}%")
    for c in results["checks"]:
        if c["step"] in (0, 50, 100, 200, 500) or c["step"] % 500 == 0:
            lines.append(f"   round {c['step']:5d}: W1 {c['w1']:.3f}, G mean {c['mean']:.2f}, std {c['std']:.2f}")
    lines.append(f"second half: W1 between {s['late_w1_min']:.3f} and {s['late_w1_max']:.3f}, G's std between "
                 f"{s['late_std_min']:.2f} and {s['late_std_max']:.2f} (data 1.25); at initialisation W1 "
                 f"{s['initial_w1']:.3f}")
    lines.append(f"wrote {figure(results, args.out_dir)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
