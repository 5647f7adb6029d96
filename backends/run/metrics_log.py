"""metrics.jsonl: one JSON object per logged round, and the progress bar's figures.

Each line is the StepMetrics of one round (reference/train.py), exactly as the backend reported it,
not an average: {"step", "d_loss", "g_loss", "d_acc_real", "d_acc_fake", "critic_gap", "d_grad_norm",
"g_grad_norm", "d_penalty"} (d_penalty: the gradient penalty's share of d_loss, 0 without one). A round
is logged when its step is a multiple of --log-every, and the last round of a
`train` invocation is always logged. Figures that do not apply (accuracies for WGAN, the critic gap
otherwise) are NaN in memory and `null` in the file, which keeps every line strict JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .files import atomic_write_bytes

FIELDS = ("step", "d_loss", "g_loss", "d_acc_real", "d_acc_fake", "critic_gap", "d_grad_norm", "g_grad_norm",
          "d_penalty")


def to_json_line(record: dict) -> str:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean)


def from_json_line(line: str) -> dict:
    record = json.loads(line)
    return {k: (float("nan") if v is None and k != "step" else v) for k, v in record.items()}


def read(path: str | Path) -> list[dict]:
    """Every complete record of a metrics file (a torn last line from a killed writer is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(from_json_line(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLog:
    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Keep only records of rounds <= step: a resumed run then logs exactly what an uninterrupted one would."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read(self.path) if r["step"] <= step]
        atomic_write_bytes(self.path, "".join(to_json_line(r) + "\n" for r in kept).encode())

    def append(self, records: list[dict]) -> None:
        if not self.enabled or not records:
            return
        with open(self.path, "a") as f:
            f.write("".join(to_json_line(r) + "\n" for r in records))
            f.flush()


def postfix(record: dict, loss_kind: str) -> dict[str, str]:
    """The progress bar's figures for one round: losses, and D's accuracy or the critic gap (WGAN)."""
    out = {"D": f"{record['d_loss']:.4f}", "G": f"{record['g_loss']:.4f}"}
    if loss_kind == "wasserstein":
        out["gap"] = f"{record['critic_gap']:.4f}"
    else:
        out["acc"] = f"{record['d_acc_real']:.2f}/{record['d_acc_fake']:.2f}"
    return out
