"""clipjax.tools.sweep: real `clipjax.main` runs of the tiny config over a grid, skip/retry, refusals, emit."""
import json
import os
import signal
import subprocess
import sys
import time

from tests.helpers import REPO

FAST = ["--set", "total_steps=3", "--set", "evals.every_steps=0", "--set", "checkpoint.every_steps=3",
        "--set", "batch_size=16"]


def sweep(root, *args):
    return subprocess.run([sys.executable, "-m", "clipjax.tools.sweep", "--config", "configs/tiny.py", "--root",
                           str(root), *FAST, *args], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def status(run_dir):
    return json.load(open(run_dir / "sweep_status.json"))


def test_grid_runs_in_parallel_failed_runs_are_reported_and_finished_runs_skipped(tmp_path):
    # warmup 50 > 3 steps is refused by the trainer at start-up: that run fails, the other one trains
    proc = sweep(tmp_path, "--grid", "optim.warmup_steps=1,50", "--seeds", "0", "--parallel", "2")
    assert proc.returncode == 1 and "1 of 2 runs failed" in proc.stderr, proc.stderr[-2000:]
    good, bad = tmp_path / "optim.warmup_steps=1+seed=0", tmp_path / "optim.warmup_steps=50+seed=0"
    assert status(good)["status"] == "done" and status(bad)["status"] == "failed"
    rows = [json.loads(line) for line in open(good / "metrics.jsonl")]
    assert max(r["step"] for r in rows) == 3 and json.load(open(good / "config.json"))["optim"]["warmup_steps"] == 1
    assert "warmup_steps" in (bad / "log.txt").read_text()
    manifest = json.load(open(tmp_path / "sweep.json"))
    assert manifest["grid"] == {"optim.warmup_steps": [1, 50]} and len(manifest["runs"]) == 2
    done_at = status(good)["time"]
    proc = sweep(tmp_path, "--grid", "optim.warmup_steps=1,50", "--seeds", "0")  # the failed run is retried only
    assert proc.returncode == 1 and status(good)["time"] == done_at and status(bad)["time"] > done_at


def test_unknown_grid_key_is_refused_before_any_run(tmp_path):
    proc = sweep(tmp_path, "--grid", "optim.learning_rate=1e-3,3e-3")
    assert proc.returncode != 0 and "--grid optim.learning_rate: not a key of the base config" in proc.stderr
    assert not [p for p in os.listdir(tmp_path) if p != "sweep.json"]


def test_root_or_run_dir_of_another_config_is_refused(tmp_path):
    assert sweep(tmp_path, "--grid", "optim.lr=1e-3", "--emit", "list").returncode == 0
    proc = sweep(tmp_path, "--grid", "optim.lr=1e-3", "--set", "optim.b2=0.95", "--emit", "list")
    assert proc.returncode != 0 and "holds a sweep with set" in proc.stderr
    other = tmp_path / "other"
    run_dir = other / "optim.lr=0.001+seed=0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"optim": {"lr": 0.001}, "model": {"embed_dim": 999}}))
    proc = sweep(other, "--grid", "optim.lr=1e-3", "--emit", "list")
    assert proc.returncode != 0 and "holds a run of another config: model.embed_dim" in proc.stderr


def test_emit_slurm_writes_one_command_per_run(tmp_path):
    proc = sweep(tmp_path, "--grid", "optim.lr=1e-3,3e-3", "--seeds", "0,1", "--emit", "slurm")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = (tmp_path / "jobs.txt").read_text().splitlines()
    assert len(jobs) == 4 and all("clipjax.main" in j and "--config.seed=" in j for j in jobs)
    assert "#SBATCH --array=0-3" in (tmp_path / "sweep.sbatch").read_text()


def test_list_file_points_times_the_grid_and_bad_list_keys_are_refused(tmp_path):
    points = tmp_path / "points.txt"
    points.write_text("# one point per line\noptim.lr=1e-3 batch_size=8\n\ndata.caption_mode=laclip  # rewrites\n")
    proc = sweep(tmp_path / "a", "--list", str(points), "--grid", "optim.b2=0.9,0.95", "--emit", "list")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = (tmp_path / "a" / "jobs.txt").read_text().splitlines()
    assert len(jobs) == 4 and sum("--config.batch_size=8" in j and "--config.optim.lr=0.001" in j for j in jobs) == 2
    manifest = json.load(open(tmp_path / "a" / "sweep.json"))
    assert manifest["list"] == [{"optim.lr": 0.001, "batch_size": 8}, {"data.caption_mode": "laclip"}]
    assert "data.caption_mode=laclip+optim.b2=0.95+seed=0" in manifest["runs"]
    from clipjax.tools import report
    assert report.group_keys(str(tmp_path / "a"), []) == ["optim.lr", "batch_size", "data.caption_mode", "optim.b2"]
    points.write_text("optim.lr=1e-3 optim.learning_rate=1\n")
    proc = sweep(tmp_path / "b", "--list", str(points), "--emit", "list")
    assert proc.returncode != 0 and "--list optim.learning_rate: not a key of the base config" in proc.stderr


def test_killed_sweep_resumes_its_run_from_the_last_checkpoint(tmp_path):
    """The sweep and its run killed (SIGKILL to the process group) after the first checkpoint: the rerun restarts
    the run, which resumes from that checkpoint and finishes."""
    args = [sys.executable, "-m", "clipjax.tools.sweep", "--config", "configs/tiny.py", "--root", str(tmp_path),
            "--set", "total_steps=200", "--set", "evals.every_steps=0", "--set", "checkpoint.every_steps=20",
            "--set", "batch_size=16", "--set", "progress_bar=False"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run, deadline = tmp_path / "seed=0", time.time() + 600
    while not any(p.name.isdigit() for p in (run / "checkpoints").glob("*")):
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before its first checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert status(run)["status"] == "running"
    rerun = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert status(run)["status"] == "done"
    log = (run / "log.txt").read_text()
    assert "resumed from step" in log and int(log.split("resumed from step ")[1].split(":")[0]) >= 20
    assert max(json.loads(line)["step"] for line in open(run / "metrics.jsonl")) == 200


def test_one_core_per_run_is_warned_about(caplog, monkeypatch):
    from clipjax.tools import sweep
    monkeypatch.setattr(sweep.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with caplog.at_level("WARNING"):
        assert sweep.core_slices(1) == [{0, 1}] and not caplog.records
        assert sweep.core_slices(2) == [{0}, {1}]
    assert "leaves 1 core per run" in caplog.text
