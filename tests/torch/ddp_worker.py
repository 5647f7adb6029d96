"""One rank of the DDP test: `torchrun --nproc_per_node=2 tests/torch/ddp_worker.py OUTDIR`.

For every case in CASES, trains the torch backend (CPU, gloo) on the GLOBAL inputs of `rounds` rounds,
half through train_step and half through set_data/train_rounds, and writes this rank's exported
parameters and metrics to OUTDIR/{case}.rank{r}.safetensors / .json. tests/torch/test_ddp.py compares
them with a 1-process run.
"""

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from backends.torch import TorchBackend
from tests.torch.common import draw_chunk, make_config, rounds_inputs, toy_data

CASES = {
    "nonsaturating_adam": dict(loss="nonsaturating", opt="adam", batch_size=16),
    "wasserstein_rmsprop_clip": dict(loss="wasserstein", opt="rmsprop_momentum", batch_size=8, d_steps=3,
                                     g_steps=1, clip_value=0.05),
    "minimax_sgd_momentum": dict(loss="minimax", opt="sgd_momentum", batch_size=12),
}
ROUNDS = 4  # 2 through train_step, 2 through train_rounds
SEED = 13


def run_case(backend: TorchBackend, config) -> list[dict]:
    """The same training a 1-process test runs; returns the metrics as dicts."""
    data = toy_data(config)
    index, z_d, z_g = draw_chunk(config, len(data), ROUNDS, seed=SEED)
    half = ROUNDS // 2
    backend.init(SEED)
    metrics = [backend.train_step(x) for x in rounds_inputs(data, index[:half], z_d[:half], z_g[:half])]
    backend.set_data(data)
    metrics += backend.train_rounds(index[half:], z_d[half:], z_g[half:])
    return [m.to_dict() for m in metrics]


def main(out: Path) -> None:
    rank = None
    backend = None
    for name, kwargs in CASES.items():
        config = make_config(**kwargs)
        backend = TorchBackend(config, device="cpu")
        rank = backend.rank
        assert backend.world_size == 2, backend.world_size
        metrics = run_case(backend, config)
        save_file({k: np.ascontiguousarray(v) for k, v in backend.export_params().items()},
                  str(out / f"{name}.rank{rank}.safetensors"))
        (out / f"{name}.rank{rank}.json").write_text(json.dumps(metrics))
        # d_grads/g_grads are local full-batch computations: no collective, the same on every rank
        x, z = toy_data(config)[:4], np.ones((4, config.spec.z_size))
        assert np.isfinite(backend.d_grads(x, z)[0]) and np.isfinite(backend.g_grads(z)[0])
    try:
        config = make_config(batch_size=15)
        bad = TorchBackend(config, device="cpu")
        bad.init(0)
        inputs = rounds_inputs(toy_data(config), *draw_chunk(config, 256, 1, seed=0))[0]
        bad.train_step(inputs)
    except ValueError as e:
        (out / f"error.rank{rank}.txt").write_text(str(e))
    backend.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
