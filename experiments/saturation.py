"""Saturation: the minimax G loss's gradient vanishes as D(G(z)) -> 0; the non-saturating loss's does not.

With l the logit D gives a fake sample and D(G(z)) = sigmoid(l), the two generator losses of
reference/losses.py have the per-sample gradients (Goodfellow et al. 2014, section 3)

    minimax (saturating)   L = log(1 - sigmoid(l)) = -softplus(l)    dL/dl = -sigmoid(l)      -> 0 as D(G(z)) -> 0
    non-saturating         L = -log sigmoid(l)     = softplus(-l)    dL/dl = -sigmoid(-l)     -> -1

Three measurements:

1. |dL/dl| from losses.minimax_g_loss and losses.nonsaturating_g_loss over D(G(z)) from 1e-5 to 0.99.
2. The norm of G's whole parameter gradient (gan.g_loss_and_grads), for the gaussian1d recipe's GAN at
   initialisation, with D's last bias shifted down so that D rejects the fakes more and more confidently.
   Shifting the bias leaves dl/dx unchanged, so only the loss's factor differs between the two losses.
3. Training from a strong D: D is first trained alone for `pretrain` steps against the initial G (it then
   rejects G's samples with D(G(z)) ~ 1e-3), then both losses train as usual (k = m = 1), once with SGD for
   G, whose step is proportional to the gradient, and once with Adam, whose step is not. We count the rounds
   until G's sample mean is within 0.5 of the data's mean 4.
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import numpy as np

from reference import data, gan, losses, optim, recipes, train

from .common import parser, pyplot, report, save_figure, sigmoid, single_thread

G_LOSSES = ("minimax", "nonsaturating")
G_OPTIMIZERS = {"sgd": optim.OptimizerSpec("sgd", lr=0.01),
                "adam": optim.OptimizerSpec("adam", lr=1e-3, beta1=0.5, beta2=0.999)}
D_OPTIMIZER = optim.OptimizerSpec("adam", lr=5e-3, beta1=0.5, beta2=0.999)


def logit_gradients(d_values):
    """|dL/dl| per sample for both G losses at the given D(G(z)) values (B = 1, so no 1/B factor)."""
    logits = np.log(d_values) - np.log1p(-d_values)  # sigmoid^{-1}
    out = {}
    for kind in G_LOSSES:
        out[kind] = np.array([abs(losses.g_loss(kind, np.array([[lg]]))[1][0, 0]) for lg in logits])
    return out


def parameter_gradients(shifts, seed=0, batch_size=512):
    """Mean D(G(z)) and the norm of G's gradient for each loss, with D's output bias lowered by each shift."""
    spec = recipes.default_config("gaussian1d", 1).spec
    params = gan.init_params(spec, seed)
    last_bias = f"D.{spec.discriminator.num_layers - 1}.bias"
    z = np.random.default_rng([seed, 20]).standard_normal((batch_size, spec.z_size))
    rows = []
    for shift in shifts:
        shifted = {**params, last_bias: params[last_bias] - shift}
        row = {"shift": float(shift)}
        for kind in G_LOSSES:
            _, stats = gan.g_loss_and_grads(gan.GANSpec(spec.generator, spec.discriminator, kind), shifted, z)
            row[kind] = stats.grad_norm
            row["d_fake"] = float(sigmoid(stats.fake_out).mean())
        rows.append(row)
    return rows


def train_from_strong_d(loss, g_opt_name, seed=0, pretrain=500, rounds=300, check_every=10, tolerance=0.5):
    """Pretrain D alone, then train both networks. Returns (D(G(z)) after pretraining, rounds to reach the
    data mean within `tolerance` (None if never), G's sample mean at every check)."""
    base = recipes.default_config("gaussian1d", 1, loss)
    config = train.TrainConfig(base.spec, D_OPTIMIZER, G_OPTIMIZERS[g_opt_name], base.batch_size, 1, 1)
    dataset = data.get_dataset("gaussian1d")
    training_set = dataset.sample(100_000, np.random.default_rng([seed, 3]))
    state = train.TrainState.initial(config, seed)
    rng = np.random.default_rng([seed, 2])
    params, d_opt = state.params, state.d_opt_state
    for _ in range(pretrain):  # D alone: G frozen
        inputs = train.draw_inputs(config, training_set, rng)
        params, d_opt, _ = gan.d_update(config.spec, config.d_optimizer, params, d_opt, inputs.real[0], inputs.z_d[0])
    state = train.TrainState(params, d_opt, state.g_opt_state)
    z_eval = np.random.default_rng([seed, 21]).standard_normal((2000, config.spec.z_size))
    d_fake = float(sigmoid(gan.discriminate(config.spec, params, gan.generate(config.spec, params, z_eval))).mean())
    means, reached = [float(gan.generate(config.spec, params, z_eval).mean())], None
    for r in range(1, rounds + 1):
        state, _ = train.train_step(config, state, train.draw_inputs(config, training_set, rng))
        if r % check_every == 0:
            means.append(float(gan.generate(config.spec, state.params, z_eval).mean()))
            if reached is None and abs(means[-1] - 4.0) < tolerance:
                reached = r
    return d_fake, reached, means


def run(seeds=(0, 1, 2), pretrain=500, rounds=300, check_every=10):
    d_values = np.logspace(-5, np.log10(0.99), 60)
    out = {"d_values": d_values, "logit_grads": logit_gradients(d_values),
           "param_grads": parameter_gradients(np.arange(0, 13, 2.0), seed=seeds[0]), "training": {}}
    with single_thread():
        for g_opt in G_OPTIMIZERS:
            for loss in G_LOSSES:
                for seed in seeds:
                    out["training"][(g_opt, loss, seed)] = train_from_strong_d(loss, g_opt, seed, pretrain, rounds,
                                                                                check_every)
    out["check_every"] = check_every
    return out


def figure(results, out_dir):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for kind, style, color in zip(G_LOSSES, ("-", "--"), ("C3", "C2"), strict=True):
        ax1.loglog(results["d_values"], results["logit_grads"][kind], style, color=color,
                   label=f"{kind}: |dL/dlogit|")
        rows = results["param_grads"]
        ax1.loglog([r["d_fake"] for r in rows], [r[kind] for r in rows], "o" if kind == "minimax" else "s",
                   color=color, label=f"{kind}: |grad of G's params|")
    ax1.set_xlabel("D(G(z))")
    ax1.set_ylabel("gradient magnitude")
    ax1.set_title("the saturating loss's gradient vanishes as D(G(z)) -> 0")
    ax1.legend(fontsize=8)
    every = results["check_every"]
    for (g_opt, loss, seed), (_, _, means) in results["training"].items():
        if seed == min(s for (_, _, s) in results["training"]):
            ax2.plot(np.arange(len(means)) * every, means, "-" if loss == "minimax" else "--",
                     color="C0" if g_opt == "sgd" else "C1", label=f"{loss}, G {g_opt}")
    ax2.axhline(4.0, color="gray", lw=0.8)
    ax2.set_xlabel("training round (after D was pretrained)")
    ax2.set_ylabel("mean of G's samples (data: 4)")
    ax2.set_title("training from a strong D")
    ax2.legend(fontsize=8)
    return save_figure(fig, out_dir, "saturation.png")


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    seeds = (args.seed,) if args.quick else (args.seed, args.seed + 1, args.seed + 2)
    results = run(seeds=seeds, pretrain=100 if args.quick else 500, rounds=60 if args.quick else 300)
    lines = ["1. |dL/dlogit| per sample at D(G(z)) = p:"]
    probe = np.array([0.5, 0.1, 1e-2, 1e-3, 1e-4])
    grads = logit_gradients(probe)
    for i, p in enumerate(probe):
        lines.append(f"   p = {p:<6g}  minimax {grads['minimax'][i]:.2e}   "
                     f"non-saturating {grads['nonsaturating'][i]:.4f}")
    lines.append(f"2. |gradient of G's parameters| (gaussian1d recipe GAN at init, seed {args.seed}, 512 z), "
                 "D's output bias lowered:")
    for r in results["param_grads"]:
        lines.append(f"   shift {r['shift']:4.1f}  mean D(G(z)) {r['d_fake']:.2e}  minimax {r['minimax']:.2e}  "
                     f"non-saturating {r['nonsaturating']:.2e}")
    lines.append("3. rounds until |mean of G's samples - 4| < 0.5, D pretrained alone first (checked every 10 rounds):")
    for (g_opt, loss, seed), (d_fake, reached, means) in results["training"].items():
        outcome = f"reached after {reached} rounds" if reached is not None else "not reached within the run"
        lines.append(f"   G optimizer {g_opt:4s} loss {loss:13s} seed {seed}: D(G(z)) after pretraining {d_fake:.1e}, "
                     f"{outcome}, mean after 50 rounds {means[min(5, len(means) - 1)]:.2f}")
    lines.append(f"wrote {figure(results, args.out_dir)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
