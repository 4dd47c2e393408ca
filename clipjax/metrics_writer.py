"""Metric sinks of a run: `metrics.jsonl` (one JSON object per line with 'step') and TensorBoard event files."""
import json
import math
import os

from tensorboardX import SummaryWriter


class MetricWriter:
    """Writes scalars to WORKDIR/metrics.jsonl and WORKDIR/tensorboard; a no-op where `enabled` is False
    (processes other than 0)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step)}
        row.update({k: _jsonable(v) for k, v in sorted(metrics.items())})
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        for k, v in metrics.items():
            self._tb.add_scalar(k, float(v), int(step))
        self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def _jsonable(v) -> float | int | str:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf literals
    return v
