"""Multi-process runs on localhost (2 JAX processes, gloo collectives), preemption and lost processes.

Every test runs real `python -m clipjax.main` processes; launch/local.sh starts the multi-process ones.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow

SMALL = ["--config", "configs/tiny.py", "--config.batch_size=16", "--config.data.image_size=16",
         "--config.model.image.image_size=16", "--config.model.image.patch_size=4", "--config.data.text_length=8",
         "--config.model.text.context_length=8", "--config.data.size=512", "--config.evals.every_steps=0",
         "--config.evals.num_examples=32", "--config.log_every_steps=1", "--config.progress_bar=False",
         "--config.optim.warmup_steps=2"]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def main_cmd(workdir, *extra, devices=8):
    return [sys.executable, "-m", "clipjax.main", *SMALL, "--workdir", str(workdir),
            f"--num_cpu_devices={devices}", *extra]


def run(cmd, timeout=600, **kw):
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def train_losses(workdir) -> dict[int, float]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    rows = [json.loads(line) for line in open(path) if line.strip()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def wait_for_step(workdir, step, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if max(train_losses(workdir), default=0) >= step:
            return
        assert proc.poll() is None, f"process ended early:\n{proc.communicate()[1][-3000:]}"
        time.sleep(0.05)
    raise TimeoutError(f"step {step} not reached")


def latest_checkpoint(workdir) -> int:
    return max(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def test_two_processes_equal_one_process_and_restore_in_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    constant = "--config.optim.schedule=constant"  # so a 5-step run is the start of a 7-step one
    run(main_cmd(one, "--config.total_steps=7", constant))
    proc = subprocess.run(["bash", "launch/local.sh", "2", *SMALL, "--workdir", str(two),
                           "--config.total_steps=5", constant], cwd=REPO,
                          env={**ENV, "CPU_DEVICES_PER_PROCESS": "4"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a, b = train_losses(one), train_losses(two)
    assert sorted(b) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([b[s] for s in b], [a[s] for s in b], rtol=1e-5)
    # The 2-process checkpoint restores into 1 process with 4 devices; the state and the data stream continue.
    run(main_cmd(two, "--config.total_steps=7", constant, devices=4))
    b = train_losses(two)
    assert sorted(b) == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose([b[6], b[7]], [a[6], a[7]], rtol=1e-5)


def test_sigterm_checkpoints_and_resume_equals_uninterrupted(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    steps = ["--config.total_steps=80", "--config.checkpoint.every_steps=1000"]
    run(main_cmd(ref, *steps, devices=2))
    proc = subprocess.Popen(main_cmd(cut, *steps, devices=2), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_step(cut, 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM received" in out + err
    stopped = latest_checkpoint(cut)
    assert 3 <= stopped < 80 and max(train_losses(cut)) == stopped
    run(main_cmd(cut, *steps, devices=2))
    a, b = train_losses(ref), train_losses(cut)
    assert sorted(b) == list(range(1, 81))
    np.testing.assert_allclose([b[s] for s in range(1, 81)], [a[s] for s in range(1, 81)], rtol=1e-6)


def test_sigkill_then_restart_resumes_from_last_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    steps = ["--config.total_steps=60", "--config.checkpoint.every_steps=5", "--config.checkpoint.async_save=False"]
    proc = subprocess.Popen(main_cmd(workdir, *steps, devices=2), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_step(workdir, 12, proc)
    proc.kill()
    proc.wait()
    saved = latest_checkpoint(workdir)
    logged = max(train_losses(workdir))
    assert saved >= 10 and saved % 5 == 0 and logged >= saved
    run(main_cmd(workdir, *steps, devices=2))
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl") if "train/loss" in line]
    steps_seen = [r["step"] for r in rows]
    assert steps_seen[-1] == 60
    assert steps_seen == sorted(set(steps_seen))  # the steps after the checkpoint ran again, logged once


def test_lost_process_ends_the_other_within_timeout(tmp_path):
    workdir = tmp_path / "run"
    port = 20000 + os.getpid() % 20000
    procs = [subprocess.Popen(
        main_cmd(workdir, "--config.total_steps=100000", f"--coordinator_address=127.0.0.1:{port}",
                 "--num_processes=2", f"--process_id={i}", "--heartbeat_timeout=5", devices=2),
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        wait_for_step(workdir, 2, procs[0])
        procs[1].kill()
        killed_at = time.time()
        _, err = procs[0].communicate(timeout=120)
        assert procs[0].returncode != 0
        assert time.time() - killed_at < 60
        assert "stopped sending heartbeats" in err and "another task died" in err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
