"""Metric sinks of a run: `metrics.jsonl` (one JSON object per line with 'step') and TensorBoard event files."""
import json
import math
import os
import sys


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported with torch hidden: tensorboardX imports torch when it is installed
    (only to accept torch tensors, which clipjax never passes), and that costs every training process ~0.5 GB
    of host memory. A torch imported before stays in place."""
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """Writes scalars to WORKDIR/metrics.jsonl and WORKDIR/tensorboard; a no-op where `enabled` is False
    (processes other than 0). A run resumed at `resume_step` first drops the rows of later steps (written after
    that checkpoint by the run that was killed), so every step appears once."""

    def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        if enabled:
            path = os.path.join(workdir, "metrics.jsonl")
            if resume_step and os.path.exists(path):
                truncate_after(path, resume_step)
            self._jsonl = open(path, "a")
            self._tb = _summary_writer_class()(os.path.join(workdir, "tensorboard"),
                                     purge_step=resume_step + 1 if resume_step else None)

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


def truncate_after(path: str, step: int) -> None:
    """Keep the rows of `path` (JSON lines with 'step') up to `step`, and any torn last line out; atomic."""
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError):
                continue  # a line cut short by the kill
    with open(path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)


def _jsonable(v) -> float | int | str:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf literals
    return v
