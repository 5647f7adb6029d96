"""The WGAN critic: its scores are unbounded, and weight clipping keeps every critic parameter in [-c, c].

Arjovsky, Chintala & Bottou (2017): the critic C outputs a real-valued score, not a probability, and
maximises E[C(x)] - E[C(G(z))]. That objective is linear in C's output, so without a constraint a critic
can raise it for ever by scaling its output up. The paper constrains C to be K-Lipschitz by clipping every
weight to [-c, c] after each update (reference/gan.py clip_weights, applied by d_update when
clip_value is set; this project clips the biases too).

Here the critic trains alone (the generator is the gaussian1d recipe's G at initialisation, frozen), with
the WGAN recipe's optimizer, RMSprop(lr 5e-5), once without clipping and once with c = 0.01. After every
critic update we record the largest |parameter|, and at checkpoints the critic gap mean C(x) - mean C(G(z))
and the range of the scores.

A bound to check against: with every |weight| <= c, a ReLU MLP with layer input sizes n_0, n_1, ... is
L-Lipschitz with L = prod_i (n_i c) (each layer maps the max-norm by at most n_i c; ReLU by at most 1).
For equal-size batches, the critic gap is then at most L times the 1-D Wasserstein-1 distance between the
two batches (sort both and average |x_(i) - y_(i)|), because any pairing of the samples bounds it.
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import numpy as np

from reference import data, gan, optim, recipes

from .common import parser, pyplot, report, save_figure, single_thread

CLIP_VALUES = (None, 0.01)


def lipschitz_bound(spec: gan.GANSpec, clip_value: float) -> float:
    """prod over D's layers of (layer input size * c): a Lipschitz constant of any clipped critic (max-norm)."""
    sizes = spec.discriminator.sizes[:-1]
    return float(np.prod([n * clip_value for n in sizes]))


def wasserstein1_1d(x, y) -> float:
    """W1 between two equal-size 1-D samples: the mean distance of the sorted samples."""
    return float(np.mean(np.abs(np.sort(x.ravel()) - np.sort(y.ravel()))))


def run(steps=2000, seed=0, checkpoints=10, batch_size=128):
    dataset = data.get_dataset("gaussian1d")
    config = recipes.default_config("gaussian1d", 1, "wasserstein")
    spec, opt = config.spec, config.d_optimizer
    results = {}
    marks = set(np.unique(np.geomspace(1, steps, checkpoints).astype(int)))
    with single_thread():
        for clip in CLIP_VALUES:
            params = gan.init_params(spec, seed)
            g_before = {k: v.copy() for k, v in gan.network(params, "G").items()}
            state = optim.init_state(opt, gan.network(params, "D"))
            rng = np.random.default_rng([seed, 30])
            max_param, rows = [], []
            for step in range(1, steps + 1):
                real, z = dataset.sample(batch_size, rng), rng.standard_normal((batch_size, spec.z_size))
                params, state, stats = gan.d_update(spec, opt, params, state, real, z, clip)
                max_param.append(max(float(np.abs(v).max()) for v in gan.network(params, "D").values()))
                if step in marks:
                    # Scores of the critic after this update, on a fresh pair of batches.
                    real, z = dataset.sample(1000, rng), rng.standard_normal((1000, spec.z_size))
                    fake = gan.generate(spec, params, z)
                    c_real, c_fake = gan.discriminate(spec, params, real), gan.discriminate(spec, params, fake)
                    rows.append({"step": step, "gap": float(c_real.mean() - c_fake.mean()),
                                 "min_score": float(min(c_real.min(), c_fake.min())),
                                 "max_score": float(max(c_real.max(), c_fake.max())),
                                 "w1": wasserstein1_1d(real, fake)})
            g_unchanged = all(np.array_equal(params[k], v) for k, v in g_before.items())
            results[clip] = {"max_param": np.array(max_param), "rows": rows, "g_unchanged": g_unchanged,
                             "bound": lipschitz_bound(spec, clip) if clip is not None else None}
    return results


def figure(results, out_dir):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for clip, r in results.items():
        label = "no clipping" if clip is None else f"clipping c = {clip}"
        ax1.loglog([row["step"] for row in r["rows"]], [abs(row["gap"]) for row in r["rows"]], "o-", label=label)
        ax2.semilogy(np.arange(1, len(r["max_param"]) + 1), r["max_param"], label=label)
        if clip is not None:
            ax2.axhline(clip, color="gray", ls=":", label=f"c = {clip}")
            ax1.loglog([row["step"] for row in r["rows"]], [r["bound"] * row["w1"] for row in r["rows"]], ":",
                       color="gray", label=f"bound L * W1 for c = {clip}")
    ax1.set_xlabel("critic update")
    ax1.set_ylabel("critic gap  mean C(x) - mean C(G(z))")
    ax1.set_title("unclipped critic scores grow without bound")
    ax2.set_xlabel("critic update")
    ax2.set_ylabel("largest |critic parameter|")
    ax2.set_title("clipping holds every parameter in [-c, c]")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "wasserstein_critic.png")


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    results = run(steps=200 if args.quick else 2000, seed=args.seed)
    lines = [f"WGAN critic trained alone against the initial G (gaussian1d, RMSprop lr 5e-5, seed {args.seed})"]
    for clip, r in results.items():
        name = "no clipping" if clip is None else f"clip c = {clip}"
        lines.append(f"{name}: largest |critic parameter| over all updates {r['max_param'].max():.4g}; "
                     f"G unchanged: {r['g_unchanged']}")
        if r["bound"] is not None:
            lines.append(f"   Lipschitz bound prod(n_i c) = {r['bound']:.3g}")
        for row in r["rows"]:
            bound = f", bound L * W1 = {r['bound'] * row['w1']:.3g}" if r["bound"] is not None else ""
            lines.append(f"   update {row['step']:5d}: gap {row['gap']:.4g}{bound}, "
                         f"scores in [{row['min_score']:.4g}, {row['max_score']:.4g}]")
    lines.append(f"wrote {figure(results, args.out_dir)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
