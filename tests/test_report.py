"""clipjax.tools.report: tables with mean +- spread over seeds, failed and unfinished runs listed apart, PNG plots."""
import json
import statistics
import subprocess
import sys

import pytest

from tests.helpers import REPO


def make_run(root, name, lr, seed, losses, top1=None, status="done", total_steps=None):
    d = root / name
    d.mkdir()
    steps = total_steps or len(losses)
    (d / "config.json").write_text(json.dumps({"optim": {"lr": lr}, "seed": seed, "total_steps": steps}))
    rows = [{"step": i + 1, "train/loss": v} for i, v in enumerate(losses)]
    if top1 is not None:
        rows.append({"step": len(losses), "eval/zeroshot_top1": top1})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status:
        (d / "sweep_status.json").write_text(json.dumps({"status": status}))


def test_report_averages_finished_runs_only_and_draws_pngs(tmp_path):
    grid = {"optim.lr": [0.001, 0.01]}
    (tmp_path / "sweep.json").write_text(json.dumps({"config": "configs/tiny.py", "set": {}, "grid": grid,
                                                     "seeds": [0, 1], "runs": {}}))
    top1 = {(0.001, 0): 0.30, (0.001, 1): 0.34, (0.01, 0): 0.50, (0.01, 1): 0.56}
    for (lr, seed), acc in top1.items():
        make_run(tmp_path, f"optim.lr={lr}+seed={seed}", lr, seed, [4.0, 3.0, 2.0 + seed], acc)
    make_run(tmp_path, "optim.lr=0.001+seed=2", 0.001, 2, [4.0, 9.0, 9.0], 0.99, status="failed")
    make_run(tmp_path, "optim.lr=0.01+seed=2", 0.01, 2, [4.0], 0.99, status="running", total_steps=3)
    make_run(tmp_path, "optim.lr=0.01+seed=3", 0.01, 3, [], status="failed")  # crashed before any metric
    proc = subprocess.run([sys.executable, "-m", "clipjax.tools.report", str(tmp_path),
                           "--metric", "eval/zeroshot_top1", "--metric", "train/loss"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "report.md").read_text()
    low = f"{statistics.fmean([0.30, 0.34]):.4f} ± {statistics.stdev([0.30, 0.34]):.4f}"
    high = f"{statistics.fmean([0.50, 0.56]):.4f} ± {statistics.stdev([0.50, 0.56]):.4f}"
    assert f"| 0.001 | 2 | 0,1 | {low} | 2.5000 ± 0.7071 |" in report
    assert f"| 0.01 | 2 | 0,1 | {high} |" in report
    assert "4 finished runs, 2 failed, 1 unfinished" in report
    assert "**Failed runs (not averaged):** optim.lr=0.001+seed=2, optim.lr=0.01+seed=3" in report
    assert "**Unfinished runs (not averaged):** optim.lr=0.01+seed=2" in report
    for png in ("eval_zeroshot_top1_vs_optim.lr.png", "train_loss_vs_optim.lr.png", "curves.png"):
        assert f"({png})" in report
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_manifest_runs_group_by_the_keys_that_differ(tmp_path):
    for lr, seed, acc in ((0.1, 0, 0.2), (0.1, 1, 0.4), (0.2, 0, 0.6)):
        make_run(tmp_path, f"run_{lr}_{seed}", lr, seed, [1.0], acc, status=None)
    from clipjax.tools import report
    text = report.write_report(str(tmp_path), ["eval/zeroshot_top1"], out=str(tmp_path / "docs"))
    assert (tmp_path / "docs" / "report.md").read_text() == text and (tmp_path / "docs" / "curves.png").exists()
    assert "| optim.lr | n | seeds | eval/zeroshot_top1 |" in text
    assert "| 0.1 | 2 | 0,1 | 0.3000 ± 0.1414 |" in text and "| 0.2 | 1 | 0 | 0.6000 ± 0.0000 |" in text


def test_a_run_sized_in_epochs_is_finished_at_its_epoch_count(tmp_path):
    from clipjax.tools import report
    make_run(tmp_path, "run", 0.1, 0, [1.0, 0.9, 0.8, 0.7], 0.5, total_steps=1000)  # total_steps is overridden:
    config = json.loads((tmp_path / "run" / "config.json").read_text())  # 2 epochs of 32 at batch 16 = 4 steps
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "total_epochs": 2.0, "batch_size": 16,
                                                              "data": {"size": 32}}))
    assert report.read_run(str(tmp_path / "run"))["state"] == "done"
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "total_epochs": 3.0, "batch_size": 16,
                                                              "data": {"size": 32}}))
    assert report.read_run(str(tmp_path / "run"))["state"] == "unfinished"


def test_where_selects_runs_and_baseline_gives_differences_in_standard_errors(tmp_path):
    from clipjax.tools import report
    for lr, seed, acc in ((0.1, 0, 0.20), (0.1, 1, 0.30), (0.2, 0, 0.50), (0.2, 1, 0.70), (0.3, 0, 0.9)):
        make_run(tmp_path, f"run_{lr}_{seed}", lr, seed, [1.0], acc, status=None)
    text = report.write_report(str(tmp_path), ["eval/zeroshot_top1"], x="optim.lr", baseline="0.1")
    se = (0.005 / 2 + 0.02 / 2) ** 0.5  # sample variances 0.005 (0.2, 0.3) and 0.02 (0.5, 0.7), 2 seeds each
    assert "| optim.lr | n | seeds | eval/zeroshot_top1 | eval/zeroshot_top1 - (optim.lr=0.1) |" in text
    assert "| 0.1 | 2 | 0,1 | 0.2500 ± 0.0707 | - |" in text
    assert f"| 0.2 | 2 | 0,1 | 0.6000 ± 0.1414 | +0.3500 ({0.35 / se:.1f} s.e.) |" in text
    assert "| 0.3 | 1 | 0 | 0.9000 ± 0.0000 | +0.6500 (13.0 s.e.) |" in text  # s.e. of 0.1's mean alone: 0.05
    text = report.write_report(str(tmp_path), ["eval/zeroshot_top1"], where={"optim.lr": "0.2"})
    assert "(runs with optim.lr=0.2)" in text and "2 finished runs" in text
    with pytest.raises(ValueError, match="not config keys"):
        report.write_report(str(tmp_path), where={"optim.beta": "1"})
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        report.parse_where(["optim.lr"])
