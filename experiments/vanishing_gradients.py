"""Vanishing gradients: G's gradient against a discriminator trained toward optimality, for the three losses.

Arjovsky & Bottou (2017, Theorems 2.4 and 2.6): when the data and G's samples lie on (nearly) disjoint
sets, D can become (nearly) perfect, and then the minimax ("saturating") generator gradient goes to zero,
while the non-saturating one does not vanish (the paper shows it becomes unstable instead). The WGAN critic
(Arjovsky, Chintala & Bottou 2017) is meant to be trained to optimality and still give G a usable gradient.

Set-up: the 8-Gaussian ring (standard deviation 0.01, far from where the initial G puts its samples), the
ring recipe's G at initialisation, frozen. A discriminator trains alone with the recipe's settings for
the minimax/non-saturating GANs (binary cross-entropy, Adam lr 1e-3); a critic trains alone with the
WGAN recipe's settings (RMSprop lr 5e-5, clipping c = 0.01). At checkpoints we compute the norm of G's
parameter gradient (gan.g_loss_and_grads) on several fixed z batches:

    minimax and non-saturating G losses against the trained discriminator (the same D for both)
    the Wasserstein G loss against the trained critic

The Wasserstein gradient's absolute size is set by c (the clipped critic's slope is at most about
prod(n_i c)); what matters is that it settles at a steady value instead of decaying.
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import numpy as np

from reference import data, gan, optim, recipes

from .common import parser, pyplot, report, save_figure, sigmoid, single_thread

G_LOSSES_VS_D = ("minimax", "nonsaturating")


def g_gradient_norms(spec, params, kind, z_batches):
    """Mean and standard deviation over z batches of |grad of G's params| for G loss `kind`."""
    loss_spec = gan.GANSpec(spec.generator, spec.discriminator, kind)
    norms = [gan.g_loss_and_grads(loss_spec, params, z)[1].grad_norm for z in z_batches]
    return float(np.mean(norms)), float(np.std(norms))


def run(steps=5000, seed=0, checkpoints=8, batch_size=128, eval_batches=4):
    dataset = data.get_dataset("ring")
    marks = sorted({0, *np.geomspace(1, steps, checkpoints - 1).astype(int).tolist()})
    rng_z = np.random.default_rng([seed, 40])
    z_batches = rng_z.standard_normal((eval_batches, 256, 2))
    results = {}
    with single_thread():
        for d_kind in ("nonsaturating", "wasserstein"):  # the BCE discriminator, then the clipped critic
            config = recipes.default_config("ring", 2, d_kind)
            spec, opt = config.spec, config.d_optimizer
            params = gan.init_params(spec, seed)
            state = optim.init_state(opt, gan.network(params, "D"))
            rng = np.random.default_rng([seed, 41])
            rows = []
            for step in range(steps + 1):
                if step in marks:
                    row = {"step": step}
                    for kind in (G_LOSSES_VS_D if d_kind != "wasserstein" else ("wasserstein",)):
                        row[kind] = g_gradient_norms(spec, params, kind, z_batches)
                    fake_out = gan.discriminate(spec, params, gan.generate(spec, params, z_batches[0]))
                    row["d_fake"] = float(sigmoid(fake_out).mean()) if d_kind != "wasserstein" else float("nan")
                    rows.append(row)
                if step == steps:
                    break
                real, z = dataset.sample(batch_size, rng), rng.standard_normal((batch_size, spec.z_size))
                params, state, _ = gan.d_update(spec, opt, params, state, real, z, config.clip_value)
            results[d_kind] = rows
    return results


def series(results, kind):
    rows = results["wasserstein" if kind == "wasserstein" else "nonsaturating"]
    steps = np.array([r["step"] for r in rows])
    return steps, np.array([r[kind][0] for r in rows]), np.array([r[kind][1] for r in rows])


def figure(results, out_dir):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for kind, label in [("minimax", "minimax (saturating) G loss"), ("nonsaturating", "non-saturating G loss"),
                        ("wasserstein", "Wasserstein G loss (clipped critic)")]:
        steps, mean, std = series(results, kind)
        ax.errorbar(np.maximum(steps, 0.5), mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("log")
    ax.set_xlabel("updates of D (or the critic) against a frozen G")
    ax.set_ylabel("|gradient of G's parameters|")
    ax.set_title("ring: G's gradient as D approaches optimality")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "vanishing_gradients.png")


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    results = run(steps=200 if args.quick else 5000, seed=args.seed)
    lines = [f"G gradient norms against a D trained alone (ring, recipe optimizers, seed {args.seed}); "
             "mean ± std over 4 batches of 256 z"]
    for d_row, c_row in zip(results["nonsaturating"], results["wasserstein"], strict=True):
        lines.append(f"D updates {d_row['step']:5d}: D(G(z)) {d_row['d_fake']:.1e}   "
                     f"minimax {d_row['minimax'][0]:.2e} ± {d_row['minimax'][1]:.1e}   "
                     f"non-saturating {d_row['nonsaturating'][0]:.2e} ± {d_row['nonsaturating'][1]:.1e}   "
                     f"Wasserstein {c_row['wasserstein'][0]:.2e} ± {c_row['wasserstein'][1]:.1e}")
    lines.append(f"wrote {figure(results, args.out_dir)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
