"""The options of `train`: one table used by argparse, by TOML config files and by config.json.

Precedence, lowest first: the recipe (reference.recipes, the single source of defaults), then the TOML
file given with --config, then the command-line flags. An option left at None by all three is filled in
from the recipe (network sizes, optimizers, steps) or from RUN_DEFAULTS below (logging cadence, seed).

A TOML file uses the option names as keys, with either dashes or underscores:

    dataset = "grid"
    loss = "wasserstein"
    hidden = [64, 64]
    batch-size = 32
    d_lr = 1e-4
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from reference import data as toy_data
from reference import losses, optim, recipes
from reference.penalty import PENALTIES, PenaltySpec
from reference.train import TrainConfig

from ..interface import DTYPES

DATASETS = (*toy_data.DATASETS, "digits", "mnist")


class ConfigError(ValueError):
    """A bad option value, config file or key; the message names the culprit."""


@dataclass(frozen=True)
class Option:
    name: str  # the attribute and TOML key; the flag is "--" + name with "_" -> "-"
    kind: type  # int, float, str, bool, or list (a list of ints)
    help: str
    choices: tuple[str, ...] | None = None
    run_control: bool = False  # may change when a run is resumed (does not change what is computed)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS = (
    Option("dataset", str, "training distribution (default: ring)", DATASETS),
    Option("loss", str, "GAN loss (default: nonsaturating)", losses.LOSSES),
    Option("data_dir", str, "folder holding the MNIST IDX files (.gz or not); needed for --dataset mnist",
           run_control=True),
    Option("steps", int, "TOTAL number of training rounds (k D updates + m G updates each); "
                         "default: the dataset's recipe", run_control=True),
    Option("batch_size", int, "batch size of every D and G update"),
    Option("z_size", int, "size of the noise vector z"),
    Option("hidden", list, "hidden layer sizes of both G and D, e.g. --hidden 64 64"),
    Option("g_optimizer", str, "G's optimizer", optim.OPTIMIZERS),
    Option("d_optimizer", str, "D's (critic's) optimizer", optim.OPTIMIZERS),
    Option("g_lr", float, "G's learning rate"),
    Option("d_lr", float, "D's learning rate"),
    Option("g_beta1", float, "G's Adam beta1"),
    Option("g_beta2", float, "G's Adam beta2"),
    Option("d_beta1", float, "D's Adam beta1"),
    Option("d_beta2", float, "D's Adam beta2"),
    Option("g_momentum", float, "G's SGD/RMSprop momentum"),
    Option("d_momentum", float, "D's SGD/RMSprop momentum"),
    Option("d_steps", int, "k: D updates per round"),
    Option("g_steps", int, "m: G updates per round"),
    Option("clip", float, "WGAN weight clipping: clamp every critic parameter to [-c, c] after each D update; "
                          "0 turns it off (default 0.01 for wasserstein, 0 otherwise)"),
    Option("penalty", str, "gradient penalty on D: r1 (Mescheder et al.), roth (Roth et al.), wgan-gp (Gulrajani "
                           "et al.), or none (default)", ("none", *PENALTIES)),
    Option("penalty_weight", float, "the penalty's weight (gamma / lambda; default 1 for r1 and roth; for wgan-gp "
                                    "10 on images, 0.1 on the toy data)"),
    Option("instance_noise", float, "sigma of the Gaussian noise added to every sample D sees (default 0: none)"),
    Option("instance_noise_anneal", int, "rounds over which the instance noise decays linearly to 0 "
                                         "(default 0: constant)"),
    Option("conditional", bool, "a conditional GAN: G and D also read the one-hot class (ring, grid: the mixture "
                               "component; digits, mnist: the digit)"),
    Option("train_size", int, "number of samples in the synthetic training set (toy datasets)"),
    Option("seed", int, "seed of every random stream of the run (default 0)"),
    Option("device", str, "backend device, e.g. cpu, cuda, cuda:1 (default: the backend's choice)",
           run_control=True),
    Option("dtype", str, "floating-point type the backend computes in (default float64)", DTYPES,
           run_control=True),
    Option("out", str, "run folder (default runs/<dataset>-<loss>-<timestamp>); must be new or empty"),
    Option("log_every", int, "write a line to metrics.jsonl every N rounds (default 10; also the last round)",
           run_control=True),
    Option("sample_every", int, "write samples/step_XXXXXX.png every N rounds (default 500; also the last)",
           run_control=True),
    Option("checkpoint_every", int, "write a checkpoint every N rounds (default 1000; also the last)",
           run_control=True),
    Option("compile", bool, "ask the backend to compile its step (torch: torch.compile)", run_control=True),
    Option("amp", bool, "ask the backend for automatic mixed precision (torch)", run_control=True),
)
BY_NAME = {o.name: o for o in OPTIONS}

RUN_DEFAULTS = {"dataset": "ring", "loss": "nonsaturating", "seed": 0, "dtype": "float64", "train_size": 100_000,
                "penalty": "none", "instance_noise": 0.0, "instance_noise_anneal": 0, "conditional": False,
                "log_every": 10, "sample_every": 500, "checkpoint_every": 1000, "compile": False, "amp": False}


def check_value(name: str, value, where: str):
    """Check one option's value against its kind and choices; returns it normalised (ints as floats etc.)."""
    if name not in BY_NAME:
        raise ConfigError(f"{where}: unknown option {name!r}; valid keys: {', '.join(sorted(BY_NAME))}")
    opt = BY_NAME[name]
    if value is None:
        return None
    if opt.kind is bool:
        ok = isinstance(value, bool)
    elif opt.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif opt.kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif opt.kind is list:
        ok = isinstance(value, list | tuple) and len(value) > 0 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = [int(v) for v in value] if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        want = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                list: "a non-empty list of integers"}[opt.kind]
        raise ConfigError(f"{where}: {name!r} must be {want}, got {type(value).__name__} {value!r}")
    if opt.choices is not None and value not in opt.choices:
        raise ConfigError(f"{where}: {name!r} is {value!r}; choose one of {', '.join(opt.choices)}")
    if opt.kind is int and name not in ("seed", "instance_noise_anneal") and value <= 0:
        raise ConfigError(f"{where}: {name!r} must be positive, got {value}")
    if opt.kind is list and any(v <= 0 for v in value):
        raise ConfigError(f"{where}: {name!r} must hold positive sizes, got {value}")
    if name == "seed" and value < 0:
        raise ConfigError(f"{where}: 'seed' must be >= 0, got {value}")
    if opt.kind is float and (value != value or value in (float("inf"), float("-inf"))):
        raise ConfigError(f"{where}: {name!r} must be finite, got {value}")
    if name in ("clip", "penalty_weight", "instance_noise", "instance_noise_anneal") and value < 0:
        raise ConfigError(f"{where}: {name!r} must be >= 0, got {value}")
    return value


def load_toml(path: str | Path) -> dict:
    """The options in a TOML file, checked: unknown keys and wrong types are errors naming the key."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in ("config", "resume"):
            raise ConfigError(f"config file {path}: {key!r} can only be given on the command line")
        if name in out:
            raise ConfigError(f"config file {path}: {key!r} is given twice (with '-' and with '_')")
        out[name] = check_value(name, value, f"config file {path}")
    return out


def merge(*layers: dict) -> dict:
    """Later layers win; None means "not given"."""
    merged = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    return merged


def resolve(given: dict) -> dict:
    """Every option with a concrete value (None only where None means "off"/"backend default")."""
    opts = {o.name: None for o in OPTIONS}
    opts.update(RUN_DEFAULTS)
    opts.update({k: v for k, v in given.items() if v is not None})
    for name, value in opts.items():
        check_value(name, value, "option")
    recipe = recipes.RECIPES[opts["dataset"]]
    for name, default in [("steps", recipe.steps), ("batch_size", recipe.batch_size), ("z_size", recipe.z_size),
                          ("hidden", list(recipe.hidden))]:
        if opts[name] is None:
            opts[name] = default
    penalty = None if opts["penalty"] == "none" else opts["penalty"]
    if penalty == "roth" and opts["loss"] == "wasserstein":
        raise ConfigError("--penalty roth weights samples by D's probabilities and needs a logit loss; with "
                          "--loss wasserstein use --penalty wgan-gp")
    # the loss's (and WGAN-GP's) default optimizers, k and clipping
    base = recipes.default_config(opts["dataset"], 1, opts["loss"], penalty=penalty)
    for net, spec in (("g", base.g_optimizer), ("d", base.d_optimizer)):
        if opts[f"{net}_optimizer"] is None:
            opts[f"{net}_optimizer"] = spec.name
        same = opts[f"{net}_optimizer"] == spec.name
        defaults = spec if same else optim.OptimizerSpec(opts[f"{net}_optimizer"], lr=spec.lr)
        for field, attr in (("lr", "lr"), ("beta1", "beta1"), ("beta2", "beta2"), ("momentum", "momentum")):
            if opts[f"{net}_{field}"] is None:
                opts[f"{net}_{field}"] = float(getattr(defaults, attr))
    if opts["d_steps"] is None:
        opts["d_steps"] = base.d_steps
    if opts["g_steps"] is None:
        opts["g_steps"] = base.g_steps
    if opts["clip"] is None:
        opts["clip"] = float(base.clip_value or 0.0)
    if opts["penalty"] == "none":
        if opts["penalty_weight"] is not None:
            raise ConfigError("--penalty-weight is set but there is no --penalty")
    elif opts["penalty_weight"] is None:
        opts["penalty_weight"] = recipes.penalty_weight(opts["penalty"], opts["dataset"])
    if opts["conditional"]:
        from .datasets import NUM_CLASSES
        if opts["dataset"] not in NUM_CLASSES:
            raise ConfigError(f"--conditional needs a dataset with classes ({', '.join(NUM_CLASSES)}); "
                              f"{opts['dataset']} has none")
        if opts["penalty"] != "none":
            raise ConfigError("--conditional with a --penalty is not implemented yet: the penalty's input gradient "
                              "would have to leave out the label inputs")
    if opts["instance_noise_anneal"] and not opts["instance_noise"]:
        raise ConfigError("--instance-noise-anneal is set but --instance-noise is 0")
    if opts["dataset"] == "mnist" and opts["data_dir"] is None:
        raise ConfigError("--dataset mnist needs --data-dir: the folder with train-images-idx3-ubyte(.gz) and "
                          "train-labels-idx1-ubyte(.gz)")
    return opts


def optimizer_spec(opts: dict, net: str) -> optim.OptimizerSpec:
    try:
        return optim.OptimizerSpec(opts[f"{net}_optimizer"], lr=opts[f"{net}_lr"], beta1=opts[f"{net}_beta1"],
                                   beta2=opts[f"{net}_beta2"], momentum=opts[f"{net}_momentum"])
    except ValueError as e:
        raise ConfigError(f"{net.upper()}'s optimizer: {e}") from None


def train_config(opts: dict, data_size: int) -> TrainConfig:
    """The TrainConfig of resolved options for data of `data_size` numbers per sample."""
    config = recipes.default_config(
        opts["dataset"], data_size, opts["loss"], z_size=opts["z_size"], hidden=tuple(opts["hidden"]),
        batch_size=opts["batch_size"], d_optimizer=optimizer_spec(opts, "d"), g_optimizer=optimizer_spec(opts, "g"),
        d_steps=opts["d_steps"], g_steps=opts["g_steps"])
    penalty = None if opts["penalty"] == "none" else PenaltySpec(opts["penalty"], opts["penalty_weight"])
    if opts["conditional"]:  # both networks read K more inputs: the one-hot class
        from .datasets import NUM_CLASSES
        k, spec = NUM_CLASSES[opts["dataset"]], config.spec
        widen = lambda net: dataclasses.replace(net, in_size=net.in_size + k)  # noqa: E731
        spec = dataclasses.replace(spec, generator=widen(spec.generator), discriminator=widen(spec.discriminator),
                                   num_classes=k)
        config = dataclasses.replace(config, spec=spec)
    return dataclasses.replace(config, clip_value=opts["clip"] if opts["clip"] > 0 else None, penalty=penalty,
                               instance_noise=opts["instance_noise"],
                               instance_noise_anneal=opts["instance_noise_anneal"])
