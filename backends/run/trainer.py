"""The training loop shared by every backend.

Randomness: every random number of training is drawn here, on the host, from ONE numpy Generator,
np.random.default_rng([seed, 2]) (the stream reference.train.train uses), round after round in the order
of reference.train.draw_inputs: real-row indices (k, B), then z_d (k, B, z_size), then z_g (m, B, z_size),
then, only when the config asks for them, the instance noise, WGAN-GP's interpolation weights and a
conditional GAN's labels for the fake samples.
The backend gets the training set once (`set_data`) and then chunks of rounds (`train_rounds`), so a run
is a deterministic function of its options and seed whatever the chunk sizes, and the checkpoint, which
stores the Generator's state after its round, resumes it bit for bit.

Chunks end at every sample / checkpoint boundary (logging needs no boundary: train_rounds returns every
round's metrics, and the log keeps every log_every-th); in between, their length adapts so that one
chunk takes about a quarter of a second (the progress bar and Ctrl-C stay responsive), within a memory
cap on the drawn arrays.

Seed streams of a run (np.random.default_rng([seed, i])): 0 G's initial parameters, 1 D's (both
reference.gan.init_params), 2 training draws, 3 the synthetic training set, 4 the fixed z of the sample
plots, 5 and 6 the evaluation (backends/run/evaluate.py).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import checkpoint, evaluate, metrics_log, plots
from .datasets import DataInfo

STEP_STREAM, PLOT_STREAM = 2, 4
TARGET_CHUNK_SECONDS = 0.25
MAX_CHUNK = 1000
MAX_CHUNK_NUMBERS = 8_000_000  # float64 numbers drawn per chunk at most (64 MB)


class TrainingDiverged(RuntimeError):
    """A loss (or the state) became NaN or Inf."""


def step_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, STEP_STREAM])


def draw_chunk(rng: np.random.Generator, config, n_data: int, n: int):
    """n rounds of draws, round by round in reference.train.draw_inputs' order.

    Returns index (n, k, B) int64, z_d (n, k, B, z_size), z_g (n, m, B, z_size) float64, and a dict of the
    extra inputs the config asks for (train_rounds' keyword arguments): noise_real, noise_fake
    (n, k, B, data_size), noise_g (n, m, B, data_size), mix (n, k, B, 1), and a conditional GAN's labels_fake
    (n, k, B) and labels_g (n, m, B); empty for a plain config.
    """
    k, m, b, z, d = config.d_steps, config.g_steps, config.batch_size, config.spec.z_size, config.spec.data_size
    index = np.empty((n, k, b), dtype=np.int64)
    z_d = np.empty((n, k, b, z))
    z_g = np.empty((n, m, b, z))
    extras = {}
    if config.needs_noise:
        extras.update(noise_real=np.empty((n, k, b, d)), noise_fake=np.empty((n, k, b, d)),
                      noise_g=np.empty((n, m, b, d)))
    if config.needs_mix:
        extras["mix"] = np.empty((n, k, b, 1))
    if config.needs_labels:
        extras["labels_fake"] = np.empty((n, k, b), dtype=np.int64)
        extras["labels_g"] = np.empty((n, m, b), dtype=np.int64)
    for r in range(n):
        index[r] = rng.integers(0, n_data, size=(k, b))
        z_d[r] = rng.standard_normal((k, b, z))
        z_g[r] = rng.standard_normal((m, b, z))
        for name in ("noise_real", "noise_fake", "noise_g"):
            if name in extras:
                extras[name][r] = rng.standard_normal(extras[name].shape[1:])
        if "mix" in extras:
            extras["mix"][r] = rng.uniform(0.0, 1.0, size=(k, b, 1))
        if "labels_fake" in extras:
            extras["labels_fake"][r] = rng.integers(0, config.spec.num_classes, size=(k, b))
            extras["labels_g"][r] = rng.integers(0, config.spec.num_classes, size=(m, b))
    return index, z_d, z_g, extras


@dataclass
class Outcome:
    step: int
    interrupted_by: int | None = None  # the signal number that stopped training early
    last_checkpoint: Path | None = None
    records: list = field(default_factory=list)


class SignalCatcher:
    """SIGINT / SIGTERM set a flag (training stops at the end of the current chunk); a second one of the
    same signal acts as usual (the first handler is restored after the first hit)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.caught: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.caught = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False


class Trainer:
    """Runs a backend from its current step to a total number of rounds, writing the run folder."""

    def __init__(self, backend, data: np.ndarray, info: DataInfo, opts: dict, run_dir: Path,
                 rng: np.random.Generator, *, backend_meta: dict, progress: bool = True, labels=None):
        self.backend, self.data, self.info, self.opts = backend, data, info, opts
        self.labels = labels  # every row's class, for a conditional GAN
        self.run_dir, self.rng, self.backend_meta = Path(run_dir), rng, backend_meta
        self.rank0 = getattr(backend, "rank", 0) == 0
        self.progress = progress and self.rank0
        self.loss_kind = backend.config.spec.loss
        self._checkpoint_step = None
        self.log = metrics_log.MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.rank0)
        self.plot_z = np.random.default_rng([opts["seed"], PLOT_STREAM]).standard_normal(
            (self._plot_count(), backend.config.spec.z_size))

    def _plot_count(self) -> int:
        if self.info.image_shape is not None:
            return 64
        return 5000 if self.info.dim == 1 else 1000

    # ----- the run folder -----

    def save_checkpoint(self) -> Path | None:
        if not self.rank0:
            return None
        params = self.backend.export_params()
        d_state, g_state = self.backend.export_optimizer_state()
        try:
            path = checkpoint.save(checkpoint.checkpoint_folder(self.run_dir), step=self.backend.step,
                                   config=self.backend.config, params=params, d_opt_state=d_state,
                                   g_opt_state=g_state, backend=self.backend_meta, options=self.opts,
                                   dataset=self.info.to_dict(), rng_state=self.rng.bit_generator.state)
        except checkpoint.CheckpointError as e:
            raise TrainingDiverged(str(e)) from None
        self._checkpoint_step = self.backend.step
        return path

    def save_samples(self) -> None:
        if not self.rank0:
            return
        folder = self.run_dir / "samples"
        folder.mkdir(exist_ok=True)
        step = self.backend.step
        samples = evaluate.generate(self.backend, self.plot_z)
        real = None if self.info.image_shape is not None else self.data[:20000]
        plots.plot_samples(folder / f"step_{step:06d}.png", samples, real=real, image_shape=self.info.image_shape,
                           title=f"{self.info.name}, {self.loss_kind} GAN, round {step}")

    def save_losses(self) -> None:
        if self.rank0:
            records = metrics_log.read(self.log.path)
            if records:
                plots.plot_losses(self.run_dir / "losses.png", records, self.loss_kind)

    # ----- the loop -----

    def _chunk_cap(self) -> int:
        c = self.backend.config
        per_round = c.batch_size * (c.d_steps * (c.spec.z_size + 1) + c.g_steps * c.spec.z_size)
        if c.needs_noise:
            per_round += c.batch_size * c.spec.data_size * (2 * c.d_steps + c.g_steps)
        if c.needs_mix:
            per_round += c.batch_size * c.d_steps
        return max(1, min(MAX_CHUNK, MAX_CHUNK_NUMBERS // per_round))

    def _next_boundary(self, step: int, total: int) -> int:
        nxt = total
        for every in (self.opts["sample_every"], self.opts["checkpoint_every"]):
            nxt = min(nxt, (step // every + 1) * every)
        return nxt

    def run(self, total: int) -> Outcome:
        backend, opts = self.backend, self.opts
        start = backend.step
        if backend.config.needs_labels:
            backend.set_data(self.data, self.labels)
        else:
            backend.set_data(self.data)
        outcome = Outcome(start)
        chunk, cap = 1, self._chunk_cap()
        bar = tqdm(total=total, initial=start, unit="round", disable=not self.progress, dynamic_ncols=True,
                   file=sys.stderr, desc=f"{self.info.name} {self.loss_kind}")
        with SignalCatcher() as signals, contextlib.closing(bar):
            step = start
            while step < total and signals.caught is None:
                n = max(1, min(chunk, cap, self._next_boundary(step, total) - step))
                index, z_d, z_g, extras = draw_chunk(self.rng, backend.config, len(self.data), n)
                t0 = time.perf_counter()
                metrics = backend.train_rounds(index, z_d, z_g, **extras)
                elapsed = time.perf_counter() - t0
                records = [m.to_dict() for m in metrics]
                if len(records) != n:
                    raise RuntimeError(f"backend returned {len(records)} rounds of metrics for {n} rounds")
                bad = next((r for r in records if not (math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]))),
                           None)
                if bad is not None:
                    self.log.append([r for r in records if r["step"] <= bad["step"]])
                    self.save_losses()
                    last = checkpoint.find_latest(checkpoint.checkpoint_folder(self.run_dir))
                    raise TrainingDiverged(
                        f"training diverged at round {bad['step']}: D loss {bad['d_loss']}, G loss {bad['g_loss']}. "
                        f"Nothing was saved after round {step}; the last good checkpoint is "
                        f"{last if last else '(none yet)'}")
                step += n
                if backend.step != step:
                    raise RuntimeError(f"backend reports step {backend.step} after {step} rounds")
                self.log.append([r for r in records if r["step"] % opts["log_every"] == 0 or r["step"] == total])
                outcome.records = records
                bar.update(n)
                bar.set_postfix(metrics_log.postfix(records[-1], self.loss_kind), refresh=False)
                if step % opts["sample_every"] == 0 or step == total:
                    self.save_samples()
                    self.save_losses()
                if step % opts["checkpoint_every"] == 0 or step == total:
                    outcome.last_checkpoint = self.save_checkpoint()
                if elapsed < TARGET_CHUNK_SECONDS / 2:
                    chunk = min(chunk * 2, cap)
                elif elapsed > TARGET_CHUNK_SECONDS * 2:
                    chunk = max(1, chunk // 2)
            outcome.step = step
            if signals.caught is not None and step < total:
                outcome.interrupted_by = signals.caught
                if self._checkpoint_step != step:
                    outcome.last_checkpoint = self.save_checkpoint()
                self.save_losses()
        return outcome
