"""The optimal discriminator: trained against a fixed G, D(x) approaches p_data / (p_data + p_g).

Goodfellow et al. (2014, Proposition 1): for a fixed generator with density p_g, the discriminator that
minimises the minimax D loss is D*(x) = p_data(x) / (p_data(x) + p_g(x)). With a perfect generator
(p_g = p_data) that is 1/2 everywhere: D can do no better than a coin flip, its accuracy is 50% and its
loss is 2 ln 2 (the binary cross-entropy of always answering 1/2).

Data: gaussian1d, N(4, 1.25^2). The generator is one linear layer G(z) = w z + b with z ~ N(0, 1), set by
hand, so p_g = N(b, w^2) is known exactly:

    perfect    w = 1.25, b = 4  (p_g = p_data)
    imperfect  w = 1.0,  b = 2  (p_g = N(2, 1))

Only D trains (gan.d_update; G's entries never change). We then compare D(x) = sigmoid(logit) on a grid
with D*(x), and measure D's accuracy and loss on fresh samples.
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import numpy as np

from reference import data, gan, optim

from .common import accuracy, linear_generator_spec, parser, pyplot, report, save_figure, sigmoid, single_thread

DATA_MEAN, DATA_STD = 4.0, 1.25
GENERATORS = {"perfect": (DATA_STD, DATA_MEAN), "imperfect": (1.0, 2.0)}  # name: (w, b), G(z) = w z + b


def normal_pdf(x, mean, std):
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))


def optimal_d(x, g_mean, g_std):
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) for Gaussian p_data and p_g."""
    p_data, p_g = normal_pdf(x, DATA_MEAN, DATA_STD), normal_pdf(x, g_mean, g_std)
    return p_data / (p_data + p_g)


def run(steps=3000, seed=0, batch_size=256, hidden=(32, 32), lr=1e-3, eval_size=20000):
    """Train D alone against each fixed G. Returns {name: dict of results}."""
    dataset = data.get_dataset("gaussian1d")
    opt = optim.OptimizerSpec("adam", lr=lr, beta1=0.5, beta2=0.999)
    grid = np.linspace(-2.0, 10.0, 241)[:, None]  # (241, 1)
    results = {}
    for name, (w, b) in GENERATORS.items():
        spec = linear_generator_spec(1, hidden, "minimax")
        params = gan.init_params(spec, seed)
        params["G.0.weight"], params["G.0.bias"] = np.array([[w]]), np.array([b])
        g_before = {k: v.copy() for k, v in gan.network(params, "G").items()}
        rng = np.random.default_rng([seed, 10])
        with single_thread():
            d_state = optim.init_state(opt, gan.network(params, "D"))
            losses = []
            for _ in range(steps):
                real = dataset.sample(batch_size, rng)
                z = rng.standard_normal((batch_size, 1))
                params, d_state, stats = gan.d_update(spec, opt, params, d_state, real, z)
                losses.append(stats.loss)
        assert all(np.array_equal(params[k], v) for k, v in g_before.items()), "a D step changed G"
        eval_rng = np.random.default_rng([seed, 11])
        real = dataset.sample(eval_size, eval_rng)
        fake = gan.generate(spec, params, eval_rng.standard_normal((eval_size, 1)))
        real_logits, fake_logits = gan.discriminate(spec, params, real), gan.discriminate(spec, params, fake)
        d_loss = float(np.mean(np.logaddexp(0, -real_logits)) + np.mean(np.logaddexp(0, fake_logits)))
        d_grid = sigmoid(gan.discriminate(spec, params, grid))[:, 0]
        d_star = optimal_d(grid[:, 0], b, w)
        # Where the data or G put mass (either density above 1% of its peak) the comparison is meaningful.
        support = (normal_pdf(grid[:, 0], DATA_MEAN, DATA_STD) > 0.01 * normal_pdf(DATA_MEAN, DATA_MEAN, DATA_STD)) | (
            normal_pdf(grid[:, 0], b, w) > 0.01 * normal_pdf(b, b, w))
        # The best possible accuracy and loss follow from D*: E[max(D*, 1 - D*)] and 2 ln 2 - 2 JSD.
        d_star_real, d_star_fake = optimal_d(real[:, 0], b, w), optimal_d(fake[:, 0], b, w)
        best_acc = float((np.sum(d_star_real > 0.5) + np.sum(d_star_fake < 0.5)) / (2 * eval_size))
        if name == "perfect":
            best_acc = 0.5  # D* = 1/2 exactly: no classifier beats a coin flip
        best_loss = float(-np.mean(np.log(d_star_real)) - np.mean(np.log1p(-d_star_fake)))
        results[name] = {
            "g_mean": b, "g_std": w, "grid": grid[:, 0], "d_grid": d_grid, "d_star": d_star,
            "max_abs_error": float(np.max(np.abs(d_grid - d_star)[support])),
            "mean_abs_error": float(np.mean(np.abs(d_grid - d_star)[support])),
            "accuracy": accuracy(real_logits, fake_logits), "best_accuracy": best_acc,
            "d_loss": d_loss, "best_loss": best_loss, "train_losses": np.array(losses),
        }
    return results


def figure(results, out_dir):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (name, r) in zip(axes, results.items(), strict=True):
        ax.plot(r["grid"], r["d_grid"], label="trained D(x)", lw=2)
        ax.plot(r["grid"], r["d_star"], "--", label=r"$D^*(x) = p_{data}/(p_{data}+p_g)$", lw=1.5)
        scale = 0.9 / normal_pdf(DATA_MEAN, DATA_MEAN, DATA_STD)
        ax.fill_between(r["grid"], normal_pdf(r["grid"], DATA_MEAN, DATA_STD) * scale, alpha=0.15, label="p_data")
        ax.fill_between(r["grid"], normal_pdf(r["grid"], r["g_mean"], r["g_std"]) * scale, alpha=0.15, label="p_g")
        ax.set_title(f"{name} G: N({r['g_mean']:g}, {r['g_std']:g}²); accuracy {100 * r['accuracy']:.1f}%")
        ax.set_xlabel("x")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("probability x is real")
    axes[1].legend(loc="upper left", fontsize=8)
    return save_figure(fig, out_dir, "optimal_discriminator.png")


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    results = run(steps=300 if args.quick else 3000, seed=args.seed)
    lines = [f"optimal discriminator (gaussian1d data N(4, 1.25^2), seed {args.seed})"]
    for name, r in results.items():
        lines.append(f"{name:9s} G = N({r['g_mean']:g}, {r['g_std']:g}^2): max |D - D*| {r['max_abs_error']:.3f}, "
                     f"mean |D - D*| {r['mean_abs_error']:.3f} (where either density > 1% of its peak); "
                     f"accuracy {100 * r['accuracy']:.1f}% (best possible {100 * r['best_accuracy']:.1f}%); "
                     f"D loss {r['d_loss']:.4f} (minimum {r['best_loss']:.4f}; 2 ln 2 = {2 * np.log(2):.4f})")
    lines.append(f"wrote {figure(results, args.out_dir)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
