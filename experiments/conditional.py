"""A conditional GAN generates the requested class (Mirza & Osindero 2014).

Data: the 8-Gaussian ring and the 25-Gaussian grid (reference/data.py); each sample's class is the
component it was drawn from (`Dataset.sample_labelled`). The conditional GAN (GANSpec.num_classes = K) reads a
one-hot label next to z (G) and next to x (D); otherwise it is the dataset's recipe: ReLU MLPs, the
non-saturating loss, Adam(1e-3, betas 0.5/0.999), batch 128, k = m = 1.

After training we ask G for 1,000 samples of each class c and classify every sample by the nearest mode, and
only count it if it lies within 3 standard deviations of that mode (PacGAN's "high quality" criterion):

    on the requested mode   share of the samples of class c that land on mode c
    on some mode            share that land on any mode

The baseline is the ordinary (unconditional) GAN of the same recipe and length: it cannot be asked for a
class, so for each c we report the share of its samples that happen to land on mode c (1/K at best).
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import numpy as np

from reference import data, gan, metrics, mlp, optim, recipes, train

from .common import parser, pyplot, report, save_figure, single_thread

PER_CLASS = 1000


def conditional_config(dataset: str) -> train.TrainConfig:
    """The dataset's recipe with a one-hot label appended to G's and D's inputs."""
    plain = recipes.default_config(dataset, 2, "nonsaturating")
    k, spec = len(data.get_dataset(dataset).modes), plain.spec
    g = mlp.MLPSpec(spec.z_size + k, spec.generator.hidden_sizes, 2, "relu", spec.generator.output_activation)
    d = mlp.MLPSpec(2 + k, spec.discriminator.hidden_sizes, 1, "relu")
    adam = optim.OptimizerSpec("adam", lr=1e-3, beta1=0.5, beta2=0.999)
    return train.TrainConfig(gan.GANSpec(g, d, "nonsaturating", num_classes=k), adam, adam,
                             batch_size=plain.batch_size)


def run_dataset(dataset: str, steps: int, seed: int = 0) -> dict:
    ds = data.get_dataset(dataset)
    k = len(ds.modes)
    x, y = ds.sample_labelled(100_000, np.random.default_rng([seed, 3]))  # (N, 2), (N,)
    cond_config, plain_config = conditional_config(dataset), recipes.default_config(dataset, 2, "nonsaturating")
    with single_thread():
        cond = train.train(cond_config, x, steps, seed, labels=y)
        plain = train.train(plain_config, x, steps, seed)
    z = np.random.default_rng([seed, 4]).standard_normal((PER_CLASS, cond_config.spec.z_size))  # same z per class
    requested, any_mode, distance, samples = [], [], [], []
    for c in range(k):
        s = gan.generate(cond_config.spec, cond.params, z, np.full(PER_CLASS, c))  # (PER_CLASS, 2)
        hit = metrics.nearest_mode(s, ds.modes, ds.sigma)
        requested.append(float(np.mean(hit == c)))
        any_mode.append(float(np.mean(hit >= 0)))
        distance.append(float(np.median(np.linalg.norm(s - ds.modes[c], axis=1))))
        samples.append(s)
    plain_samples = gan.generate(plain_config.spec, plain.params, np.random.default_rng([seed, 4]).standard_normal(
        (PER_CLASS * k, plain_config.spec.z_size)))
    plain_hit = metrics.nearest_mode(plain_samples, ds.modes, ds.sigma)
    plain_share = [float(np.mean(plain_hit == c)) for c in range(k)]
    return {"dataset": dataset, "steps": steps, "classes": k, "requested": requested, "any_mode": any_mode,
            "distance": distance, "sigma": ds.sigma, "plain_share": plain_share, "samples": samples, "modes": ds.modes}


def run(steps=None, seed=0, datasets=("ring", "grid")):
    steps = steps or {"ring": 2000, "grid": 4000}
    return [run_dataset(name, steps[name], seed) for name in datasets]


def figure(results, out_dir):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 5))
    axes = np.atleast_1d(axes)
    for ax, r in zip(axes, results, strict=True):
        cmap = plt.get_cmap("tab10" if r["classes"] <= 10 else "turbo")
        for c, s in enumerate(r["samples"]):
            color = cmap(c / (r["classes"] - 1)) if r["classes"] > 10 else cmap(c)
            ax.scatter(s[:200, 0], s[:200, 1], s=3, color=color, alpha=0.6)
            ax.annotate(str(c), r["modes"][c] * 1.12, ha="center", va="center", fontsize=7)
        ax.set_aspect("equal")
        ax.set_title(f"{r['dataset']}: 200 samples per requested class\n"
                     f"on the requested mode: {100 * np.mean(r['requested']):.1f}% on average")
    return save_figure(fig, out_dir, "conditional.png")


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    results = run(steps={"ring": 300, "grid": 300} if args.quick else None, seed=args.seed,
                  datasets=("ring",) if args.quick else ("ring", "grid"))
    lines = []
    for r in results:
        req, anym, plain = np.array(r["requested"]), np.array(r["any_mode"]), np.array(r["plain_share"])
        lines.append(f"{r['dataset']} ({r['classes']} classes), {r['steps']} rounds, seed {args.seed}: "
                     f"conditional GAN on the requested mode {100 * req.mean():.1f}% on average "
                     f"(worst class {100 * req.min():.1f}%), on some mode {100 * anym.mean():.1f}%; "
                     f"unconditional GAN on a given mode {100 * plain.mean():.1f}% on average "
                     f"(1/K = {100 / r['classes']:.1f}%)")
        for c in range(r["classes"]):
            lines.append(f"   class {c:2d}: requested mode {100 * req[c]:5.1f}%, some mode {100 * anym[c]:5.1f}%, "
                         f"median distance to it {r['distance'][c] / r['sigma']:5.1f} sigma; "
                         f"unconditional GAN on mode {c}: {100 * plain[c]:5.1f}%")
    lines.append(f"wrote {figure(results, args.out_dir)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
