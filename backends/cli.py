"""The command line shared by every backend: `python -m backends.<name> {train,sample,eval} ...`.

    train    train a GAN and write a run folder (config.json, metrics.jsonl, samples/, losses.png,
             checkpoints/, summary.json); `train --resume RUN --steps M` continues RUN to M rounds in total
    sample   draw N samples from a run's newest checkpoint (or a checkpoint file) into .npy or .png
    eval     print sample-quality figures of a checkpoint (mode metrics for ring/grid, ...)

Every backend's __main__ is `sys.exit(main("<name>"))`. The CLI only talks to backends.interface.Backend,
so it works with any registered backend; checkpoints are backend-independent. docs/cli.md has the details.

Exit status: 0 success; 1 a bad option, file or checkpoint (the message names it); 2 a usage error
(argparse); 3 training diverged (NaN/Inf); 128 + signal number when SIGINT/SIGTERM stopped training
after saving a checkpoint (130, 143).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from reference.train import TrainConfig

from . import load_backend
from .interface import DTYPES
from .run import checkpoint, config, datasets, evaluate, plots, trainer
from .run.files import atomic_write_bytes, atomic_write_json, remove_stray_temporaries

RUN_FORMAT, RUN_FORMAT_VERSION = "ganspec-run", "1"
EXIT_ERROR, EXIT_DIVERGED = 1, 3


class CLIError(ValueError):
    """A user-facing error: printed as one message, exit status 1."""


# ----- argument parsing -----

def build_parser(backend_name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m backends.{backend_name}",
                                     description=f"Train and sample GANs with the {backend_name} backend.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,eval}")

    train = sub.add_parser("train", help="train a GAN and write a run folder",
                           description="Train a GAN. Defaults: reference.recipes for the dataset and loss.",
                           argument_default=argparse.SUPPRESS)
    for opt in config.OPTIONS:
        kwargs = {"help": opt.help, "dest": opt.name}
        if opt.kind is bool:
            kwargs["action"] = "store_true"
        elif opt.kind is list:
            kwargs.update(type=int, nargs="+", metavar="N")
        else:
            kwargs["type"] = opt.kind
            if opt.choices:
                kwargs["choices"] = opt.choices
        train.add_argument(opt.flag, **kwargs)
    train.add_argument("--config", dest="config_file", metavar="FILE.toml",
                       help="TOML file of options (same names as the flags); flags given here override it")
    train.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN up to --steps rounds in all")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    sample = sub.add_parser("sample", help="generate samples from a checkpoint")
    sample.add_argument("--checkpoint", required=True, metavar="RUN",
                        help="a run folder (its newest checkpoint is used) or a checkpoint file")
    sample.add_argument("-n", type=int, default=1000, help="number of samples (default 1000)")
    sample.add_argument("--out", required=True, metavar="FILE", help="output: FILE.npy (array (n, dim)) or FILE.png")
    sample.add_argument("--seed", type=int, default=0, help="z ~ N(0, I) from np.random.default_rng(SEED)")
    sample.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    _runtime_args(sample)

    ev = sub.add_parser("eval", help="print sample-quality figures of a checkpoint")
    ev.add_argument("--checkpoint", required=True, metavar="RUN", help="a run folder or a checkpoint file")
    ev.add_argument("-n", type=int, default=evaluate.EVAL_SAMPLES, help="number of generated samples (default 2500)")
    ev.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed, as in "
                                                           "summary.json)")
    ev.add_argument("--data-dir", default=None, help="MNIST folder, if not where the run found it")
    ev.add_argument("--json", metavar="FILE", default=None, help="also write the figures to FILE as JSON")
    _runtime_args(ev)
    return parser


def _runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="backend device (default: the backend's choice)")
    p.add_argument("--dtype", default="float64", choices=DTYPES, help="computation dtype (default float64)")


def make_backend(backend_name: str, train_config, *, dtype: str, device: str | None, compile: bool = False,
                 amp: bool = False):
    try:
        cls = load_backend(backend_name)
    except ImportError as e:
        raise CLIError(f"the {backend_name} backend cannot be imported: {e}") from None
    extra = {}
    if compile:
        extra["compile"] = True
    if amp:
        extra["amp"] = True
    try:
        return cls(train_config, dtype=dtype, device=device, **extra)
    except TypeError as e:
        if extra:
            raise CLIError(f"the {backend_name} backend does not support {', '.join('--' + k for k in extra)}: "
                           f"{e}") from None
        raise
    except ValueError as e:  # e.g. a device or dtype the backend cannot use, or an option it does not implement
        message = str(e)
        raise CLIError(message if message.startswith(f"the {backend_name} backend") else
                       f"the {backend_name} backend: {message}") from None


def backend_meta(backend) -> dict:
    return {"name": type(backend).name, "dtype": backend.dtype, "device": None if backend.device is None
            else str(backend.device)}


# ----- train -----

def _given_options(args: argparse.Namespace) -> dict:
    """Options from --config, overridden by the flags actually given on the command line."""
    from_file = config.load_toml(args.config_file) if getattr(args, "config_file", None) else {}
    flags = {o.name: getattr(args, o.name) for o in config.OPTIONS if hasattr(args, o.name)}
    for name, value in flags.items():
        config.check_value(name, value, f"option {config.BY_NAME[name].flag}")
    return config.merge(from_file, flags)


def _new_run_dir(opts: dict) -> Path:
    if opts.get("out"):
        out = Path(opts["out"])
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise CLIError(f"output folder {out} already exists and is not empty; choose another --out, or "
                           f"continue that run with --resume {out}")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{opts['dataset']}-{opts['loss']}-{stamp}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def _resume_options(run: Path, given: dict) -> tuple[dict, dict]:
    """(saved run config, options for continuing it): only run-control options may differ from the saved ones."""
    path = run / "config.json"
    if not path.is_file():
        raise CLIError(f"--resume {run}: {path} not found (is {run} a run folder?)")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CLIError(f"--resume {run}: {path} is not valid JSON: {e}") from None
    if saved.get("format") != RUN_FORMAT or saved.get("format_version") != RUN_FORMAT_VERSION:
        raise CLIError(f"{path} is not a ganspec run config of format version {RUN_FORMAT_VERSION}")
    opts = dict(saved["options"])
    for name, value in given.items():
        if name == "out" and Path(value).resolve() == run.resolve():
            continue
        if not config.BY_NAME[name].run_control and value != opts.get(name):
            raise CLIError(f"{config.BY_NAME[name].flag} cannot change when resuming: the run has "
                           f"{opts.get(name)!r}, got {value!r}")
        opts[name] = value
    # re-check the merged options; a run saved before an option existed gets that option's default
    return saved, config.resolve(opts)


def cmd_train(backend_name: str, args: argparse.Namespace) -> int:
    given = _given_options(args)
    resume = Path(args.resume) if getattr(args, "resume", None) else None
    if resume is not None:
        saved, opts = _resume_options(resume, given)
        run_dir = resume
    else:
        saved, opts = None, config.resolve(given)
        run_dir = _new_run_dir(opts)

    data, labels, info = datasets.load_labelled(opts["dataset"], seed=opts["seed"], train_size=opts["train_size"],
                               data_dir=opts["data_dir"])
    train_config = config.train_config(opts, info.dim)
    if saved is not None:
        if TrainConfig.from_dict(saved["train_config"]).to_dict() != train_config.to_dict():
            raise CLIError(f"{run_dir}/config.json: its options and its train_config disagree")
        if saved["dataset"]["sha256"] != info.sha256:
            raise CLIError(f"the {info.name} training data differs from the data run {run_dir} was trained on "
                           f"(SHA-256 {info.sha256[:12]}... vs {saved['dataset']['sha256'][:12]}...)")
    backend = make_backend(backend_name, train_config, dtype=opts["dtype"], device=opts["device"],
                           compile=opts["compile"], amp=opts["amp"])
    rank0 = getattr(backend, "rank", 0) == 0
    meta = backend_meta(backend)

    rng = trainer.step_rng(opts["seed"])
    start_from = None
    if resume is not None:
        if rank0:
            remove_stray_temporaries(checkpoint.checkpoint_folder(run_dir))
            remove_stray_temporaries(run_dir)
        latest = checkpoint.find_latest(checkpoint.checkpoint_folder(run_dir))
        if latest is not None:
            ck = checkpoint.load(latest, expected_config=train_config)
            if ck.meta["dataset"]["sha256"] != info.sha256:
                raise CLIError(f"{latest} was trained on different {info.name} data")
            if ck.step > opts["steps"]:
                raise CLIError(f"run {run_dir} already has {ck.step} rounds, more than --steps {opts['steps']} "
                               f"(--steps is the TOTAL number of rounds)")
            backend.load_state(ck.params, ck.d_opt_state, ck.g_opt_state, ck.step)
            state = ck.rng_state
            if state.get("bit_generator") != type(rng.bit_generator).__name__:
                raise CLIError(f"{latest}: random generator {state.get('bit_generator')!r} is not "
                               f"{type(rng.bit_generator).__name__}")
            rng.bit_generator.state = state
            start_from = latest
    if start_from is None:
        backend.init(opts["seed"])

    if rank0:
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta, "from_step": backend.step,
                  "to_step": opts["steps"]}
        run_config = saved or {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                               "train_config": train_config.to_dict(), "dataset": info.to_dict(), "history": []}
        run_config = {**run_config, "backend": meta, "options": opts,
                      "history": [*run_config.get("history", []), record]}
        atomic_write_json(run_dir / "config.json", run_config)
        if resume is not None:
            trainer.metrics_log.MetricsLog(run_dir / "metrics.jsonl").truncate_after(backend.step)
        where = f"resuming {run_dir} at round {backend.step}" if resume is not None else f"writing {run_dir}"
        print(f"{where}: {info.name}, {train_config.spec.loss} loss, {opts['steps']} rounds, backend {meta['name']} "
              f"({meta['dtype']}{', ' + meta['device'] if meta['device'] else ''})", file=sys.stderr)

    if backend.step >= opts["steps"]:
        if rank0:
            print(f"run {run_dir} already has {backend.step} rounds: nothing to train", file=sys.stderr)
        return 0
    started = time.perf_counter()
    t = trainer.Trainer(backend, data, info, opts, run_dir, rng, backend_meta=meta, labels=labels,
                        progress=not getattr(args, "no_progress", False))
    first = backend.step
    try:
        outcome = t.run(opts["steps"])
    except trainer.TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    seconds = time.perf_counter() - started
    if outcome.interrupted_by is not None:
        if rank0:
            print(f"stopped by signal {outcome.interrupted_by} after round {outcome.step}; checkpoint "
                  f"{outcome.last_checkpoint}. Continue with: train --resume {run_dir} --steps {opts['steps']}",
                  file=sys.stderr)
        return 128 + int(outcome.interrupted_by)
    if rank0:
        result = evaluate.evaluate(backend, data, info, opts["seed"])
        summary = {"steps": outcome.step, "final": outcome.records[-1] if outcome.records else None,
                   "eval": result, "backend": meta, "seconds": seconds,
                   "rounds_per_second": (outcome.step - first) / seconds if seconds > 0 else None,
                   "checkpoint": str(outcome.last_checkpoint.relative_to(run_dir)) if outcome.last_checkpoint
                   else None}
        atomic_write_json(run_dir / "summary.json", _jsonable(summary))
        print(evaluate.describe(result))
        print(f"run folder: {run_dir}", file=sys.stderr)
    return 0


def _jsonable(obj):
    """NaN/Inf -> None so that summary.json is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


# ----- sample and eval -----

def load_for_inference(backend_name: str, path: str, dtype: str, device: str | None):
    ck = checkpoint.load(checkpoint.resolve(path))
    backend = make_backend(backend_name, ck.config, dtype=dtype, device=device)
    backend.load_state(ck.params, ck.d_opt_state, ck.g_opt_state, ck.step)
    return ck, backend


def _real_data_for_plot(ck) -> np.ndarray | None:
    """The run's training data for a plot's background: regenerated for toy datasets, else None."""
    info = ck.meta["dataset"]
    if info.get("image_shape") or info["name"] not in datasets.toy_data.DATASETS:
        return None
    opts = ck.options
    data, _ = datasets.load(info["name"], seed=opts["seed"], train_size=min(opts["train_size"], 20000))
    return data


def cmd_sample(backend_name: str, args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".npy", ".png"):
        raise CLIError(f"--out {out}: the file name must end in .npy or .png")
    if args.n <= 0:
        raise CLIError(f"-n must be positive, got {args.n}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if out.exists() and not args.force:
        raise CLIError(f"{out} already exists; use --force to overwrite it")
    ck, backend = load_for_inference(backend_name, args.checkpoint, args.dtype, args.device)
    z = np.random.default_rng(args.seed).standard_normal((args.n, ck.config.spec.z_size))
    samples = evaluate.generate(backend, z)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, samples, allow_pickle=False)
        atomic_write_bytes(out, buf.getvalue())
    else:
        shape = ck.meta["dataset"].get("image_shape")
        plots.plot_samples(out, samples, real=_real_data_for_plot(ck), image_shape=tuple(shape) if shape else None,
                           title=f"{ck.meta['dataset']['name']}, round {ck.step}, seed {args.seed}")
    print(f"wrote {args.n} samples of round {ck.step} ({ck.path}) to {out}", file=sys.stderr)
    return 0


def run_eval(backend_name: str, checkpoint_path: str, *, n: int = evaluate.EVAL_SAMPLES, seed: int | None = None,
             data_dir: str | None = None, dtype: str = "float64", device: str | None = None) -> dict:
    """The figures `eval` prints, as a dict (for programs and tests)."""
    if n <= 0:
        raise CLIError(f"-n must be positive, got {n}")
    ck, backend = load_for_inference(backend_name, checkpoint_path, dtype, device)
    opts = ck.options
    data, info = datasets.load(opts["dataset"], seed=opts["seed"], train_size=opts["train_size"],
                               data_dir=data_dir or opts.get("data_dir"))
    if info.sha256 != ck.meta["dataset"]["sha256"]:
        print(f"warning: the {info.name} data found now differs from the data {ck.path} was trained on",
              file=sys.stderr)
    result = evaluate.evaluate(backend, data, info, opts["seed"] if seed is None else seed, n)
    return {"checkpoint": str(ck.path), "step": ck.step, "dataset": info.name, **result}


def cmd_eval(backend_name: str, args: argparse.Namespace) -> int:
    result = run_eval(backend_name, args.checkpoint, n=args.n, seed=args.seed, data_dir=args.data_dir,
                      dtype=args.dtype, device=args.device)
    print(f"{result['dataset']}, round {result['step']} ({result['checkpoint']}):")
    print(evaluate.describe(result))
    print(json.dumps(_jsonable(result)))
    if args.json:
        atomic_write_json(args.json, _jsonable(result))
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval}


def main(backend_name: str, argv: list[str] | None = None) -> int:
    """Run the CLI for one backend; returns the exit status (see the module docstring)."""
    parser = build_parser(backend_name)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), message already printed
        return int(e.code or 0)
    try:
        return COMMANDS[args.command](backend_name, args)
    except (CLIError, config.ConfigError, datasets.DataError, checkpoint.CheckpointError) as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
