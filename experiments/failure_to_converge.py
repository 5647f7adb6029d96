"""Failure to converge, and two remedies: noise on D's inputs and gradient penalties.

The smallest GAN that shows it is the "Dirac GAN" of Mescheder, Geiger & Nowozin (2018, "Which training
methods for GANs do actually converge?"): the data is a single point, x = 0; G outputs a single number theta;
D is linear, D(x) = psi * x + c. The only equilibrium is theta = 0 (G on the data) with psi = 0 (D cannot
tell anything apart). Built from the reference's parts: G is a one-layer MLP whose input z is held at 0 (all
randomness is an input, so we hand it zeros), which leaves G(z) = its bias theta; D is a one-layer MLP.
Both train with plain SGD (lr 0.1), k = m = 1, non-saturating loss unless stated, from theta = 1, psi = 1.

Without a remedy the pair circles around the equilibrium: D's slope pushes G past 0, the slope then flips
sign and pushes it back. We measure the distance from the equilibrium, r = sqrt(theta^2 + psi^2), which
unlike |theta| does not dip to 0 each time G crosses the data, over the rounds for:

    plain             nothing added
    instance noise    D sees x + sigma * n, n ~ N(0, 1), for real and fake samples (Arjovsky & Bottou 2017)
    annealed noise    the same, sigma decaying linearly to 0 over the run
    R1                (gamma / 2) E_real ||dD/dx||^2 added to D's loss (Mescheder et al. 2018)
    Roth et al.       their regulariser, each sample's ||dD/dx||^2 weighted by D's error on it (2017)
    WGAN-GP           Wasserstein loss with lambda E (||dD/dx|| - 1)^2 at interpolates (Gulrajani et al. 2017)
"""

import sys

if not __package__:  # run as `python experiments/<name>.py`: import it as a package module, as -m does
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    __package__ = "experiments"

import dataclasses

import numpy as np

from reference import gan, mlp, optim, train
from reference.penalty import PenaltySpec

from .common import parser, pyplot, report, save_figure, single_thread

VARIANTS = {
    "plain": {},
    "instance noise (sigma 1)": {"instance_noise": 1.0},
    "annealed noise (sigma 1 -> 0)": {"instance_noise": 1.0, "instance_noise_anneal": None},  # None: the run's length
    "R1 (gamma 1)": {"penalty": PenaltySpec("r1", 1.0)},
    "Roth et al. (gamma 1)": {"penalty": PenaltySpec("roth", 1.0)},
    "WGAN-GP (lambda 1)": {"penalty": PenaltySpec("wgan-gp", 1.0), "loss": "wasserstein"},
}


def dirac_config(steps: int, loss="nonsaturating", lr=0.1, batch=64, **options) -> train.TrainConfig:
    if options.get("instance_noise_anneal", 0) is None:
        options["instance_noise_anneal"] = steps
    spec = gan.GANSpec(mlp.MLPSpec(1, (), 1), mlp.MLPSpec(1, (), 1), loss)
    sgd = optim.OptimizerSpec("sgd", lr=lr)
    return train.TrainConfig(spec, sgd, sgd, batch_size=batch, **options)


def dirac_state(config: train.TrainConfig, theta=1.0, psi=1.0) -> train.TrainState:
    params = {"G.0.weight": np.zeros((1, 1)), "G.0.bias": np.array([theta]),  # G(z) = z * 0 + theta
              "D.0.weight": np.array([[psi]]), "D.0.bias": np.zeros(1)}  # D(x) = psi * x + c
    return train.TrainState(params, optim.init_state(config.d_optimizer, gan.network(params, "D")),
                            optim.init_state(config.g_optimizer, gan.network(params, "G")))


def run_variant(steps: int, seed: int = 0, **options) -> dict:
    """Train one variant; returns theta, psi and c after every round (arrays of length steps + 1)."""
    config = dirac_config(steps, **options)
    state = dirac_state(config)
    data = np.zeros((1, 1))  # the data distribution: a point mass at 0
    rng = np.random.default_rng([seed, 2])
    path = [(1.0, 1.0, 0.0)]
    for _ in range(steps):
        inputs = train.draw_inputs(config, data, rng)
        inputs = dataclasses.replace(inputs, z_d=np.zeros_like(inputs.z_d), z_g=np.zeros_like(inputs.z_g))
        state, _ = train.train_step(config, state, inputs)
        p = state.params
        path.append((p["G.0.bias"][0], p["D.0.weight"][0, 0], p["D.0.bias"][0]))
    theta, psi, c = np.array(path).T
    return {"theta": theta, "psi": psi, "c": c, "radius": np.hypot(theta, psi)}


def run(steps=3000, seed=0, variants=None):
    with single_thread():
        return {name: run_variant(steps, seed, **VARIANTS[name]) for name in (variants or VARIANTS)}


def figure(results, out_dir):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, r in results.items():
        rounds = np.arange(len(r["theta"]))
        ax1.plot(rounds, np.maximum(r["radius"], 1e-60), label=name, lw=1)
    ax1.set_yscale("log")
    ax1.set_ylim(1e-8, 30)
    ax1.set_xlabel("training round")
    ax1.set_ylabel("sqrt(theta^2 + psi^2): distance from equilibrium")
    ax1.set_title("Dirac GAN: do G and D reach the equilibrium?")
    ax1.legend(fontsize=7)
    for name in ("plain", "instance noise (sigma 1)", "R1 (gamma 1)"):
        if name in results:
            ax2.plot(results[name]["theta"], results[name]["psi"], label=name, lw=0.8)
    ax2.plot([0], [0], "k*", ms=10, label="equilibrium")
    ax2.set_xlabel("theta (G's output)")
    ax2.set_ylabel("psi (D's slope)")
    ax2.set_title("the paths in (theta, psi)")
    ax2.legend(fontsize=7)
    return save_figure(fig, out_dir, "failure_to_converge.png")


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    steps = 300 if args.quick else 3000
    results = run(steps=steps, seed=args.seed)
    checkpoints = [c for c in (100, 300, 1000, 3000) if c <= steps]
    lines = [f"Dirac GAN (data at 0, G(z) = theta, D(x) = psi x + c), SGD lr 0.1, {steps} rounds, seed {args.seed}",
             "distance from the equilibrium r = sqrt(theta^2 + psi^2) after N rounds (1.41 at the start):",
             f"{'variant':32s}" + "".join(f"  {'r @' + str(c):>10s}" for c in checkpoints)
             + f"  {'final theta':>12s}  {'final psi':>10s}"]
    for name, r in results.items():
        lines.append(f"{name:32s}" + "".join(f"  {r['radius'][c]:10.3g}" for c in checkpoints)
                     + f"  {r['theta'][-1]:12.3g}  {r['psi'][-1]:10.3g}")
    lines.append(f"wrote {figure(results, args.out_dir)}")
    report(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
