"""MetricWriter: metrics.jsonl rows, TensorBoard events, and no torch import (host memory)."""
import json
import os
import subprocess
import sys

import pytest

from clipjax import metrics_writer


def test_rows_and_tensorboard_events_are_written_and_resume_drops_later_rows(tmp_path):
    w = metrics_writer.MetricWriter(str(tmp_path))
    for step in (1, 2, 3):
        w.write(step, {"train/loss": 1.0 / step, "bad": float("nan")})
    w.close()
    w = metrics_writer.MetricWriter(str(tmp_path), resume_step=2)
    w.write(3, {"train/loss": 0.5})
    w.close()
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["train/loss"] == 0.5 and rows[0]["bad"] == "nan"
    events = os.listdir(tmp_path / "tensorboard")
    assert events and all(os.path.getsize(tmp_path / "tensorboard" / e) > 0 for e in events)


def test_training_imports_leave_torch_out_and_torch_still_imports_after(tmp_path):
    """tensorboardX would import torch (~0.5 GB resident) into every training process when it is installed."""
    pytest.importorskip("torch")
    code = (f"import sys, clipjax.train, clipjax.metrics_writer as m; w = m.MetricWriter({str(tmp_path)!r}); "
            "w.write(1, {'a': 1.0}); w.close(); print('torch' in sys.modules); import torch; print(torch.ones(2).sum().item())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "2.0"]
